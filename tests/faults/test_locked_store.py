"""A store locked by another process in the middle of a sweep (issue 20, item 1): the lock is waited
for up to GDEXP_LOCK_WAIT_S (short here; 120 s by default) on every read and write, the fast path's
schema-revision fence included; a lock that outlasts the wait keeps the runs on disk for `gdexp
resume`, leaves no artifact folder without its run and no parent RUNNING, and says so without a
traceback. Figures read from the store through MLflow's client."""
from __future__ import annotations

import subprocess
import sys

import pytest

from fault_tools import LOCKER, all_runs, census

pytestmark = pytest.mark.faults

LRS = "optimizer.lr=0.001,0.002,0.003,0.004,0.005,0.006,0.007,0.008"


@pytest.fixture
def lock_after_first_batch(monkeypatch, tmp_path):
    """lock(seconds): once the sweep's first batch is recorded, another process holds BEGIN EXCLUSIVE
    on the store for `seconds` (the sweep goes on meanwhile)."""
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's plugin scan first: a sweeper class imported before it breaks
    import gdexp.hydra.sweepers.grid as grid

    holders = []

    def lock(seconds: float):
        real, batches = grid.to_launch, []

        def to_launch(*args):
            batches.append(1)
            if len(batches) == 2:
                holder = subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path / "mlflow.db"), str(seconds)],
                                          stdout=subprocess.PIPE, text=True)
                holders.append(holder)
                assert holder.stdout.readline().strip() == "locked"
            return real(*args)

        monkeypatch.setattr(grid, "to_launch", to_launch)
        return holders

    yield lock
    for holder in holders:
        holder.kill()
        holder.wait()


def orphaned_artifact_folders(tmp_path, uri: str) -> list[str]:
    """Folders under mlartifacts/<experiment>/ that no run of the store owns."""
    runs = {r.info.run_id for r in all_runs(uri)}
    return [p.name for p in (tmp_path / "mlartifacts").glob("*/*") if p.is_dir() and p.name not in runs]


def _sweep(gdexp, sweep_dir, launcher: str):
    return gdexp("-m", "loss=booth", LRS, "stopping.maxiter=50", "hydra.sweeper.max_batch_size=2",
                 f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}")


@pytest.mark.parametrize("launcher, wait, seconds", [
    ("gdexp", 4, 1.5),    # within SQLite's own wait (busy_timeout, bounded by the wait)
    ("gdexp", 4, 6),      # past it: the fence's revision read and the chunk's transaction wait it out
    ("gdexp", 3, 5.5),
    ("basic", 2, 4),      # one job at a time, each below MLflow's API: SQLite's wait, then gdexp's
    ("joblib", 2, 3),     # worker processes: the bound reaches them through the environment
])
def test_a_lock_shorter_than_the_wait_loses_nothing(gdexp, store, tmp_path, monkeypatch, lock_after_first_batch,
                                                    launcher, wait, seconds):
    monkeypatch.setenv("GDEXP_LOCK_WAIT_S", str(wait))
    lock_after_first_batch(seconds)
    sweep_dir = tmp_path / "sweep"
    code, out, err = _sweep(gdexp, sweep_dir, launcher)
    assert code == 0 and "Traceback" not in err and "FastPathUnavailable" not in err, err
    assert {k: v for k, v in census(store, sweep_dir).items() if k != "planned"} == {
        "finished": 8, "lost": 0, "duplicated": 0, "running": 0, "parent": "FINISHED", "active_children": 8}
    assert orphaned_artifact_folders(tmp_path, store) == []
    assert not (sweep_dir / "gdexp-unrecorded").exists()


@pytest.mark.parametrize("launcher, wait, seconds", [
    ("gdexp", 1, 8), ("gdexp", 2, 10),
    ("basic", 1, 8),  # one job at a time, each written below MLflow's API (gdexp.tracking.record) with gdexp's bound
])
def test_a_lock_longer_than_the_wait_keeps_the_runs_for_resume(gdexp, store, tmp_path, monkeypatch,
                                                               lock_after_first_batch, launcher, wait, seconds):
    monkeypatch.setenv("GDEXP_LOCK_WAIT_S", str(wait))
    holders = lock_after_first_batch(seconds)
    sweep_dir = tmp_path / "sweep"
    code, out, err = _sweep(gdexp, sweep_dir, launcher)
    holders[0].wait(timeout=60)  # the lock is over
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in err and "sqlalchemy" not in err.lower(), err
    if launcher == "gdexp":  # said once for the sweep, not once a run
        assert sum("did not take runs" in line for line in lines) == 1, err
    else:  # one job at a time: one line each
        assert sum(" not recorded (" in line for line in lines) == 6, err
    assert "6 of 8 runs could not be recorded" in err or "6 runs could not be recorded" in err, err
    assert f"gdexp resume {sweep_dir}" in err
    assert len(list(sweep_dir.glob("gdexp-unrecorded/*/run.json"))) == 6
    assert orphaned_artifact_folders(tmp_path, store) == []  # the chunk's files went with its rows
    found = census(store, sweep_dir)
    assert found["finished"] == 2 and found["running"] == 0 and found["parent"] == "KILLED", (found, err)
    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0 and "recorded 6 runs" in out, err
    assert {k: v for k, v in census(store, sweep_dir).items() if k != "planned"} == {
        "finished": 8, "lost": 0, "duplicated": 0, "running": 0, "parent": "FINISHED", "active_children": 8}
    assert orphaned_artifact_folders(tmp_path, store) == []


def test_a_bad_lock_wait_is_one_line(gdexp, store, monkeypatch):
    monkeypatch.setenv("GDEXP_LOCK_WAIT_S", "soon")
    code, out, err = gdexp("loss=booth", "stopping.maxiter=5")
    assert code == 2 and err.strip() == "gdexp: error: GDEXP_LOCK_WAIT_S='soon': must be a number of seconds >= 0"
    assert all_runs(store) == []


def test_a_lock_held_as_a_process_first_looks_is_seen_at_once_and_once(tmp_path):
    """held_at_first_look: a store another process holds locked is seen after SAY_AFTER_S, not after
    SQLite's busy timeout, on this process's first look only; a free store, a missing file and a
    server are not locked. (The lock is SQLite's: any database file shows it.)"""
    import sqlite3

    from fault_tools import locked_store

    from gdexp.tracking import writes

    for name in ("held.db", "free.db"):
        with sqlite3.connect(tmp_path / name) as db:
            db.execute("CREATE TABLE t (x)")
    held = f"sqlite:///{tmp_path / 'held.db'}"
    with locked_store(tmp_path / "held.db", 600):
        assert writes.held_at_first_look(held)
        assert not writes.held_at_first_look(held)  # said once a process
    for uri in (f"sqlite:///{tmp_path / 'free.db'}", f"sqlite:///{tmp_path / 'none.db'}", "http://127.0.0.1:1"):
        assert not writes.held_at_first_look(uri)
    assert not (tmp_path / "none.db").exists()  # looked at, never created


def test_a_reader_waits_for_a_locked_store_and_says_so(gdexp, store, tmp_path):
    """gdexp report and rerun on a store another process holds locked: the wait is said, and the
    command goes on when the lock ends; past GDEXP_LOCK_WAIT_S, one line. (The store check first
    took "database is locked" for "not an MLflow SQLite database".)"""
    from fault_tools import locked_store, start_gdexp

    def command(*args: str, **env: str):  # a process of its own: its lines reach stderr as a user's do
        done = start_gdexp(*args, cwd=tmp_path, **env)
        out, err = done.communicate(timeout=120)
        return done.returncode, out, err

    code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.02", "stopping.maxiter=20")
    assert code == 0, err
    run_id = next(r.info.run_id for r in all_runs(store) if "mlflow.parentRunId" in r.data.tags)
    with locked_store(tmp_path / "mlflow.db", 3) as holder:
        code, out, err = command("report")
        holder.wait(timeout=30)
    assert code == 0 and "Report of sweep" in out, err
    assert err.startswith(f"gdexp: store locked by another process; waiting (up to 120 s): {store}"), err
    with locked_store(tmp_path / "mlflow.db", 600):
        code, out, err = command("rerun", run_id, GDEXP_LOCK_WAIT_S="1")
    assert code == 2 and out == "", out
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("gdexp: store locked by another process; waiting (up to 1 s)"), err
    assert lines[1].startswith(f"gdexp: error: tracking.uri='{store}': the store stayed locked by another process "
                               "for 1 s"), err
