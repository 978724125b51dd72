"""Failures in the middle of a sweep (issue 15 items 4, 5, 7, 8): its data file deleted or replaced,
a read-only artifact or store folder, a store locked by another process. Figures from the store."""
from __future__ import annotations

import hashlib
import time

import pytest

from fault_tools import all_runs, census, locked_store, make_store, on_each_write, read_only, start_gdexp

from gdexp.tracking.writes import MLFLOW_BUSY_S

pytestmark = pytest.mark.faults

LAUNCHERS = ("gdexp", "joblib")
LRS = "optimizer.lr=0.001,0.002,0.003,0.004,0.005,0.006,0.007,0.008"
SMALL = ["-m", "loss=booth", "optimizer.lr=0.01,0.02,0.03", "stopping.maxiter=5"]


def _data(path, slope: float):
    path.write_text("x,y\n" + "".join(f"{i},{slope * i + 1}\n" for i in range(20)))
    return path


def _after_first_batch(monkeypatch, action) -> None:
    """Run action() once the sweep's first batch is done, before its second is launched."""
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's plugin scan first: a sweeper class imported before it breaks
    import gdexp.hydra.sweepers.grid as grid

    real, batches = grid.to_launch, []

    def to_launch(*args):
        batches.append(1)
        if len(batches) == 2:
            action()
        return real(*args)

    monkeypatch.setattr(grid, "to_launch", to_launch)


def _sweep(gdexp, csv, sweep_dir, launcher: str):
    return gdexp("-m", "loss=linear_regression", f"loss.data={csv}", LRS, "stopping.maxiter=20",
                 "hydra.sweeper.max_batch_size=2", f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}")


def _not_run(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("gdexp: job not run:")]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_data_file_deleted_mid_sweep_loses_no_job(gdexp, store, tmp_path, monkeypatch, launcher):
    csv, sweep_dir = _data(tmp_path / "d.csv", 2.0), tmp_path / "sweep"
    original = csv.read_bytes()
    _after_first_batch(monkeypatch, csv.unlink)
    code, out, err = _sweep(gdexp, csv, sweep_dir, launcher)
    found, not_run = census(store, sweep_dir), _not_run(err)
    assert found["running"] == 0 and "Traceback" not in err, err
    assert found["finished"] + len(not_run) == 8, err  # every planned job: FINISHED, or listed as not run
    if launcher == "gdexp":  # the batched launcher descends the data it validated, held in memory
        assert code == 0 and found["finished"] == 8 and found["parent"] == "FINISHED"
        return
    # joblib's workers read the file again: the jobs after the first batch cannot run, and say so once each
    assert code == 1 and found["finished"] == 2 and found["parent"] == "FAILED"
    assert len(not_run) == 6 and all("file not found" in line and "optimizer.lr=" in line for line in not_run)
    assert "Error executing job" not in err
    csv.write_bytes(original)  # the file back: resume runs the jobs that were not run
    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0 and "6 to go" in out, err
    assert {k: v for k, v in census(store, sweep_dir).items() if k != "planned"} == {
        "finished": 8, "lost": 0, "duplicated": 0, "running": 0, "parent": "FINISHED", "active_children": 8}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_data_file_replaced_mid_sweep_is_never_fitted(gdexp, store, tmp_path, monkeypatch, launcher):
    csv, sweep_dir = _data(tmp_path / "d.csv", 2.0), tmp_path / "sweep"
    validated = hashlib.sha256(csv.read_bytes()).hexdigest()
    _after_first_batch(monkeypatch, lambda: _data(csv, -3.0))
    code, out, err = _sweep(gdexp, csv, sweep_dir, launcher)
    runs = [r for r in all_runs(store) if "mlflow.parentRunId" in r.data.tags]
    assert {r.data.tags["gdexp.data_sha256"] for r in runs} == {validated}, err  # one data set per sweep
    found, not_run = census(store, sweep_dir), _not_run(err)
    assert found["running"] == 0 and found["finished"] + len(not_run) == 8 and "Traceback" not in err
    if launcher == "gdexp":
        assert code == 0 and found["finished"] == 8
    else:
        assert code == 1 and found["finished"] == 2 and len(not_run) == 6, (out, err)
        assert all("changed since the sweep validated it" in line for line in not_run), not_run


def test_a_read_only_artifact_folder_is_refused_before_any_run(gdexp, store, tmp_path):
    assert gdexp("loss=booth", "stopping.maxiter=5")[0] == 0  # the store and its artifact folder exist
    before = len(all_runs(store))
    with read_only(tmp_path / "mlartifacts"):
        sweep = gdexp(*SMALL)
        single = gdexp("loss=booth", "stopping.maxiter=5")
    for code, out, err in (sweep, single):
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"gdexp: error: tracking.uri='{store}': the artifact folder ") and "not writable" in err
    assert len(all_runs(store)) == before


def test_a_read_only_store_folder_is_refused_before_any_run(gdexp, store, tmp_path, monkeypatch):
    folder = tmp_path / "stores"
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with read_only(folder):
        code, out, err = gdexp(*SMALL)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"gdexp: error: tracking.uri='{uri}': the store's folder is not writable: "
                               f"cannot write in {folder}: ")
    assert not (folder / "mlflow.db").exists()


def test_a_store_locked_as_the_sweep_starts_is_waited_for(store, tmp_path):
    """Another process holds BEGIN EXCLUSIVE as the sweep opens the store (issue: failed after 7.8 s)."""
    make_store(store)
    sweep_dir = tmp_path / "sweep"
    with locked_store(tmp_path / "mlflow.db", 600):
        started = time.monotonic()
        process = start_gdexp(*SMALL, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
        waiting = process.stderr.readline()  # the sweep's first words: it waits, then we let go
        said_after = time.monotonic() - started
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, waiting + err
    assert waiting.startswith("gdexp: store locked by another process; waiting (up to 120 s)")
    # said as the sweep first looks at the store (writes.held_at_first_look), not after SQLite's
    # busy timeout of MLflow's 20 s: the user knows at once why nothing happens
    assert said_after < MLFLOW_BUSY_S, said_after
    assert "Traceback" not in err and "database is locked" not in err
    assert {k: v for k, v in census(store, sweep_dir).items() if k in ("finished", "lost", "running", "parent")} == {
        "finished": 3, "lost": 0, "running": 0, "parent": "FINISHED"}


def test_a_store_locked_past_the_bound_is_one_line_and_no_run(gdexp, store, tmp_path, monkeypatch):
    make_store(store)
    monkeypatch.setattr("gdexp.tracking.writes.LOCK_WAIT_S", 1.0)
    with locked_store(tmp_path / "mlflow.db", 600):
        code, out, err = gdexp(*SMALL)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert lines[0].startswith("gdexp: store locked by another process; waiting (up to 1 s)")
    assert lines[1].startswith(f"gdexp: error: tracking.uri='{store}': the store stayed locked by another process "
                               "for 1 s")
    assert all_runs(store) == []


@pytest.mark.parametrize("path", ["fast", "client"])
def test_a_store_that_stays_locked_mid_sweep_keeps_the_runs_for_resume(gdexp, store, tmp_path, monkeypatch, path):
    """The store locks for good while run 3 of 4 is recorded (the fast path's transaction, or MLflow's
    log_batch): runs 3 and 4 are kept on disk, none is lost, and `gdexp resume` records them and
    closes the sweep."""
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    def locked(k):
        if k >= 3:
            raise (sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database is locked")) if path == "fast"
                   else MlflowException("(sqlite3.OperationalError) database is locked"))

    sweep_dir = tmp_path / "sweep"
    with pytest.MonkeyPatch.context() as fault:  # the fault for this sweep only
        fault.setattr("gdexp.tracking.writes.LOCK_WAIT_S", 0.5)
        on_each_write(fault, path, "log_batch", locked)
        code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.02,0.03,0.04", "stopping.maxiter=5",
                               "hydra.sweeper.max_batch_size=1", f"hydra.sweep.dir={sweep_dir}")
    assert code == 1 and "Traceback" not in err, err
    assert "2 runs could not be recorded" in err and f"gdexp resume {sweep_dir}" in err
    assert len(list(sweep_dir.glob("gdexp-unrecorded/*/run.json"))) == 2
    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0 and "recorded 2 runs" in out, err
    assert {k: v for k, v in census(store, sweep_dir).items() if k != "planned"} == {
        "finished": 4, "lost": 0, "duplicated": 0, "running": 0, "parent": "FINISHED", "active_children": 4}
