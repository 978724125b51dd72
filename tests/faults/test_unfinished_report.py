"""The report of a sweep stopped part-way (issue 15, "Reports of unfinished sweeps"): it says how many
of the planned runs exist and states no answer as if the grid were complete; once resumed, it does."""
from __future__ import annotations

import pytest

from cli_runner import fail_artifacts
from fault_tools import census

pytestmark = pytest.mark.faults

LRS = ",".join(f"{k / 1000:g}" for k in range(1, 11))


def test_the_report_of_a_killed_sweep_says_so_and_states_no_answer(gdexp, store, tmp_path, monkeypatch):
    sweep_dir = tmp_path / "sweep"
    fail_artifacts(monkeypatch, lambda spec, n: n == 4, KeyboardInterrupt())  # Ctrl-C while run 4 is written
    code, out, err = gdexp("-m", "loss=booth", f"optimizer.lr={LRS}", "stopping.maxiter=50",
                           "hydra.sweeper.max_batch_size=1", f"hydra.sweep.dir={sweep_dir}")
    monkeypatch.undo()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)
    assert code == 130 and f"gdexp: interrupted: 3 of 10 runs recorded; to finish: gdexp resume {sweep_dir}" in err
    parent = census(store, sweep_dir)
    assert parent["parent"] == "KILLED" and parent["running"] == 0

    code, out, err = gdexp("report", "--out", str(tmp_path / "r1"))
    assert code == 0, err
    said = "3 of 10 planned runs recorded; sweep KILLED"
    assert out.splitlines()[1] == f"{said}; the report states no best_lr or max_stable_lr"
    md = (tmp_path / "r1" / "report.md").read_text()
    top = md.split("\n\n")[1]
    assert top.startswith(f"**{said}.** No best_lr or max_stable_lr is stated")
    # run 4's chunk was never committed (the fast path writes a chunk whole or not at all)
    assert "3 runs, 0 diverged, 0 failed" in md and "killed or still running" not in md
    assert "max_stable_lr=" not in md and "best_lr=" not in md

    assert gdexp("resume", str(sweep_dir))[0] == 0
    code, out, err = gdexp("report", "--out", str(tmp_path / "r2"))
    assert code == 0 and "planned runs recorded" not in out, err
    md = (tmp_path / "r2" / "report.md").read_text()
    assert "planned runs recorded" not in md and "max_stable_lr=0.01" in md and "10 runs, 0 diverged, 0 failed;" in md
