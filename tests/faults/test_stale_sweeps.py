"""A sweep's parent left RUNNING by a process that is gone (issue 20, item 3): closed KILLED when
gdexp next opens the store, by a sweep or a single run; the same command run again says in one line
that an unfinished sweep of the same configs exists and how to finish it. Parents of a live process,
or of another host, are left alone. Figures from the store, through MLflow's client."""
from __future__ import annotations

import signal
import socket

import pytest

from fault_tools import all_runs, census, finished_children, start_gdexp, stop, wait_for

pytestmark = pytest.mark.faults

GRID = 12
# On the blocking loss of fault_tools (its module in the start folder: the blocking_loss fixture):
# the first sweep, one job at a time, stops at its fifth config for as long as the test needs
# (GDEXP_TEST_BLOCK, in that process only), half-way whatever the machine's speed; the same
# sweep run again in the test's process (the launcher is no part of a config) does not block.
SWEEP = ["-m", "loss=custom", "loss._target_=blockloss.Bowl", f"+loss.scale=range(1,{GRID + 1})",
         "stopping.maxiter=50"]


def _killed_half_way(store, tmp_path, sweep_dir):
    process = start_gdexp(*SWEEP, "hydra/launcher=basic", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
                          GDEXP_TEST_BLOCK="5")
    wait_for(lambda: (sweep_dir / "gdexp-plan.json").exists(), 120, "the sweep's plan")
    wait_for(lambda: finished_children(store) >= 2, 300, "a first batch FINISHED")
    assert stop(process, signal.SIGKILL)[0] == -signal.SIGKILL
    found = census(store, sweep_dir)
    assert found["parent"] == "RUNNING" and found["finished"] < GRID, found
    return process.pid, found["finished"]


def _unfinished_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "an unfinished sweep of the same" in line]


def test_the_same_sweep_again_closes_the_dead_parent_and_names_it(gdexp, store, tmp_path, blocking_loss):
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    pid, finished = _killed_half_way(store, tmp_path, old_dir)
    code, out, err = gdexp(*SWEEP, f"hydra.sweep.dir={new_dir}")
    assert code == 0 and "Traceback" not in err, err
    old = census(store, old_dir)
    assert old["parent"] == "KILLED" and old["running"] == 0, old
    assert f"was left RUNNING by process {pid}, which is gone: closed KILLED" in err
    [line] = _unfinished_lines(err)
    assert line == (f"gdexp: an unfinished sweep of the same {GRID} configs exists ({old and _parent(old_dir)}, "
                    f"KILLED, {finished} FINISHED); this starts a new one; to finish that one instead: "
                    f"gdexp resume {old_dir.resolve()}")
    new = census(store, new_dir)
    assert (new["finished"], new["lost"], new["duplicated"], new["running"], new["parent"]) == (GRID, 0, 0, 0, "FINISHED")
    # the old sweep can still be finished, as the line says
    code, out, err = gdexp("resume", str(old_dir))
    assert code == 0, err
    old = census(store, old_dir)
    assert (old["finished"], old["lost"], old["duplicated"], old["running"], old["parent"]) == (GRID, 0, 0, 0, "FINISHED")
    code, out, err = gdexp(*SWEEP, f"hydra.sweep.dir={tmp_path / 'third'}")
    assert code == 0 and _unfinished_lines(err) == []  # finished now: nothing to point at


def _parent(sweep_dir) -> str:
    import json

    return json.loads((sweep_dir / "gdexp-plan.json").read_text())["parent_id"]


@pytest.mark.parametrize("then", [["loss=booth", "stopping.maxiter=5"],
                                  ["-m", "loss=booth", "optimizer.lr=0.1,0.2", "stopping.maxiter=5"]],
                         ids=["a-single-run", "another-sweep"])
def test_any_command_that_opens_the_store_closes_a_dead_parent(gdexp, store, tmp_path, blocking_loss, then):
    old_dir = tmp_path / "old"
    _killed_half_way(store, tmp_path, old_dir)
    code, out, err = gdexp(*then, f"hydra.sweep.dir={tmp_path / 'other'}")
    assert code == 0 and _unfinished_lines(err) == [], err  # other configs: no unfinished sweep of them
    assert sum(r.info.status == "RUNNING" for r in all_runs(store)) == 0
    assert census(store, old_dir)["parent"] == "KILLED"


def test_a_parent_of_a_live_process_or_another_host_is_left_alone(gdexp, store, tmp_path, blocking_loss):
    from mlflow import MlflowClient

    sweep_dir = tmp_path / "live"
    process = start_gdexp("-m", *blocking_loss, "+loss.scale=1,2", "hydra/launcher=basic", "stopping.maxiter=50",
                          f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, GDEXP_TEST_BLOCK="1")
    try:
        wait_for(lambda: sum(r.info.status == "RUNNING" for r in all_runs(store)) == 2, 120, "the live sweep's run")
        live = _parent(sweep_dir)
        cl = MlflowClient(store)
        exp = cl.get_run(live).info.experiment_id
        far = cl.create_run(exp, tags={"gdexp.sweep": "true", "gdexp.pid": "1", "gdexp.host": socket.gethostname() + "-x"})
        code, out, err = gdexp("loss=booth", "stopping.maxiter=5")
        assert code == 0 and "closed KILLED" not in err, err
        assert cl.get_run(live).info.status == "RUNNING" and cl.get_run(far.info.run_id).info.status == "RUNNING"
    finally:
        stop(process, signal.SIGTERM)
