"""Sweeps you can watch while they run (gdexp.tracking.live, gdexp.hydra.launchers.progress): runs
RUNNING with growing curves while their batch descends, read from another process; the final
store the same as without live writes; each run's real start and end; the terminal's progress bar."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from store_snapshot import differences, snapshot

# One batch of four rows: lr=0.2 diverges at step 5 (booth's Hessian has eigenvalue 18: 2/18 < 0.2),
# lr=0.01 runs 20,000 and 150,000 steps (gtol=0: every step taken), several seconds of descent.
SWEEP = ["-m", "loss=booth", "optimizer.lr=0.01,0.2", "stopping.maxiter=20000,150000", "stopping.gtol=0"]
LONGEST = "booth-gd-lr=0.01-maxiter=150000"


@pytest.mark.parametrize("loss_name, patience", [("booth", 0), ("rosenbrock", 0), ("quadratic", 50)])
def test_the_descent_callback_sees_each_row_as_it_is_and_changes_nothing(loss_name, patience):
    """What a descent callback reads (gdexp.core.descent.Progress) is each row's curve so far: a
    prefix of its final curve, bit for bit; a stopped row's Result as it ends; and the results
    with a callback are those without."""
    import numpy as np

    from gdexp.core.descent import descend
    from gdexp.core.losses import make_loss
    from gdexp.core.optimizers import make_optimizer
    from gdexp.core.stopping import StoppingRules

    loss = make_loss(loss_name)
    lrs = np.array([1e-4, 1e-3, 1.5, 2e-3])  # 1.5 diverges on all three
    rules = StoppingRules.of([dict(maxiter=3000, gtol=1e-12, patience=patience, min_delta=0.0,
                                   divergence_factor=1e4)] * len(lrs))

    def run(callback=None):
        return descend(loss, make_optimizer("gd", lr=lrs), np.tile(loss.default_init(), (len(lrs), 1)), rules,
                       callback=callback)

    seen = []

    def callback(progress):
        if progress.step % 7 == 0 or not progress.running:
            seen.append((progress.step, progress.running, progress.stopped.copy(), progress.diverged.copy(),
                         [progress.result(i) for i in range(progress.size)]))

    watched, plain = run(callback), run()
    for a, b in zip(watched, plain):
        assert (a.status, a.iterations) == (b.status, b.iterations)
        np.testing.assert_array_equal(a.loss, b.loss)
        np.testing.assert_array_equal(a.path, b.path)
    assert len(seen) > 3 and seen[-1][1] == 0 and seen[-1][2].all() and seen[-1][3][2] and watched[2].diverged
    for step, running, stopped, diverged, results in seen:
        assert running == (~stopped).sum()
        assert (diverged == [r.diverged for r in results]).all()
        for result, final in zip(results, watched):
            if result.status == "running":
                assert result.iterations == step < final.iterations
                np.testing.assert_array_equal(result.loss, final.loss[: step + 1])
                np.testing.assert_array_equal(result.grad_norm, final.grad_norm[: step + 1])
                np.testing.assert_array_equal(result.x, final.path[step])
            else:
                assert (result.status, result.iterations) == (final.status, final.iterations)
                np.testing.assert_array_equal(result.loss, final.loss)


def _start(folder: Path, *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    folder.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    env.pop("GDEXP_PARENT_RUN_ID", None)
    return subprocess.Popen([sys.executable, "-c", "from gdexp.commands.main import main; main()", *args,
                             f"hydra.sweep.dir={folder / 'sweep'}"], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=stderr, text=True)


def _children(cl: MlflowClient) -> list:
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _loss_steps(cl: MlflowClient, run) -> list[int]:
    return [m.step for m in cl.get_metric_history(run.info.run_id, "loss")]


def test_runs_are_written_while_they_descend_and_end_as_without_live_writes(tmp_path):
    live = _start(tmp_path / "live", *SWEEP, "tracking.live_every=1")
    plan = tmp_path / "live" / "sweep" / "gdexp-plan.json"
    while not plan.exists() and live.poll() is None:
        time.sleep(0.1)
    cl = MlflowClient(f"sqlite:///{tmp_path / 'live' / 'mlflow.db'}")
    seen: list[dict] = []  # one entry per poll while the sweep runs: run name -> (status, gdexp.status, steps)
    while live.poll() is None:
        polled = {r.info.run_name: (r.info.status, r.data.tags.get("gdexp.status"), _loss_steps(cl, r))
                  for r in _children(cl)}
        if live.poll() is None:  # still descending when read: a live view
            seen.append(polled)
        time.sleep(0.5)
    out, err = live.communicate()
    assert live.returncode == 0, err

    running = [p for p in seen if len(p) == 4 and all(s == "RUNNING" for s, _, _ in p.values())]
    assert running, f"never saw the four runs RUNNING before the sweep ended: {seen[-3:]}"
    growth = [max(p[LONGEST][2]) for p in running if p[LONGEST][2]]
    assert len(set(growth)) >= 2 and growth == sorted(growth), growth  # its chart gains points
    assert all(len(p[LONGEST][2]) <= 320 for p in running)  # sampled as the final curve is
    # the diverged run is shown diverged while the others still descend
    assert any(p["booth-gd-lr=0.2-maxiter=150000"][1] == "diverged" for p in running)

    off = _start(tmp_path / "off", *SWEEP, "tracking.live_every=0")
    out, err = off.communicate()
    assert off.returncode == 0, err
    with_live, without = snapshot(cl.tracking_uri), snapshot(f"sqlite:///{tmp_path / 'off' / 'mlflow.db'}")
    assert len(with_live) == 5
    for snap in (with_live, without):  # the parent's command is what was typed, its process its own
        (parent,) = [run for run in snap.values() if run["parent"] is None]
        assert "tracking.live_every=" in parent["tags"].pop("gdexp.command")
        assert parent["tags"].pop("gdexp.pid") and parent["tags"].pop("gdexp.process_started")
    assert differences(with_live, without) == []
    assert "tracking.live_every" not in json.dumps(with_live)  # how a run is watched is not recorded
    for uri in (cl.tracking_uri, f"sqlite:///{tmp_path / 'off' / 'mlflow.db'}"):
        check_durations(MlflowClient(uri))


def check_durations(cl: MlflowClient) -> None:
    """Each run starts when its batch's descent starts and ends when its own row stops."""
    runs = sorted(_children(cl), key=lambda r: r.data.metrics["iterations"])
    assert [int(r.data.metrics["iterations"]) for r in runs] == [5, 5, 20000, 150000]
    assert len({r.info.start_time for r in runs}) == 1  # one batch: one start
    ends = [r.info.end_time for r in runs]
    assert ends == sorted(ends) and ends[1] < ends[2] < ends[3]  # each row ends at its own stop step
    durations = [r.info.end_time - r.info.start_time for r in runs]
    assert durations[3] > 3 * durations[2] > 0  # 150,000 steps against 20,000
    parent = cl.get_run(runs[0].data.tags["mlflow.parentRunId"]).info
    assert parent.start_time <= runs[0].info.start_time and ends[-1] <= parent.end_time


def _in_a_terminal(folder: Path, *args: str) -> tuple[int, str]:
    """`gdexp ARGS` with stderr on a pseudo-terminal 160 columns wide: (exit status, what it showed)."""
    main, tty = pty.openpty()
    fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = _start(folder, *args, stderr=tty)
    os.close(tty)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        shown += chunk
    process.communicate()
    os.close(main)
    return process.returncode, shown.decode(errors="replace")


BAR = re.compile(r"gdexp:\s+(\d+)%\|.*?\| ([\d.]+[kM]?)/([\d.]+[kM]?) \[[\d:]+<([\d:]+), [^,]*step/s, "
                 r"diverged=(\d+), failed=(\d+), recorded=(\d+)/(\d+), running=(\d+)\]")


def test_the_terminal_shows_the_descent_of_a_sweep(tmp_path):
    code, shown = _in_a_terminal(tmp_path / "sweep", *SWEEP)
    assert code == 0, shown
    bars = BAR.findall(shown)
    during = [b for b in bars if b[8] != "0"]  # while runs descend
    assert during, shown[-2000:]
    assert {b[2] for b in bars} == {"340k"} and {b[7] for b in bars} == {"4"}  # 2 x (20,000 + 150,000) steps
    assert {(b[4], b[5], b[6]) for b in during} == {("2", "0", "0")}  # two diverged at once, none recorded yet
    assert {b[8] for b in during} <= {"1", "2"} and all(0 <= int(b[0]) < 100 for b in during)
    assert all(re.fullmatch(r"\d\d:\d\d", b[3]) for b in during[1:])  # an estimate of the time left
    assert bars[-1][6] == "4"  # then the four recorded


def test_the_terminal_shows_the_descent_of_a_single_run(tmp_path):
    code, shown = _in_a_terminal(tmp_path / "run", "loss=booth", "optimizer.lr=0.01", "stopping.maxiter=60000",
                                 "stopping.gtol=0")
    assert code == 0, shown
    during = [b for b in BAR.findall(shown) if b[8] == "1"]
    assert during and during[-1][2] == "60.0k" and 0 < int(during[-1][0]) < 100, shown[-2000:]


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path):
    process = _start(tmp_path / "sweep", "-m", "loss=booth", "optimizer.lr=0.01,0.2", "stopping.maxiter=20000")
    _, err = process.communicate()
    assert process.returncode == 0 and "step/s" not in err and "\r" not in err, err
