"""Crashes and signals (issue 15 items 1-3, issue 9 item 17): kill -9, SIGTERM, Ctrl-C, and a
Ctrl-C inside a store write; then `gdexp resume`. Figures: runs lost, duplicated, left RUNNING."""
from __future__ import annotations

import os
import signal
import time

import pytest

from fault_tools import all_runs, census, finished_children, on_each_write, start_gdexp, stop, wait_for

pytestmark = pytest.mark.faults

GRID = 16
# 8 batches of 2 runs, each batch ~0.5 s of descent (gtol=0: every step taken), so that a kill
# half-way lands between batches and not after the last one (4 batches, ~2 s, of margin)
SWEEP = ["-m", "loss=booth", f"optimizer.lr=logspace(1e-4,1e-2,{GRID})", "stopping.maxiter=100000",
         "stopping.gtol=0", "hydra.sweeper.max_batch_size=2"]
BLOCKED = ["-m", "+loss.scale=1,2,3,4,5,6", "hydra/launcher=basic", "stopping.maxiter=50"]
COMPLETE = {"lost": 0, "duplicated": 0, "running": 0, "parent": "FINISHED"}


def _started(sweep_dir):
    return lambda: (sweep_dir / "gdexp-plan.json").exists()


def _in_flight(uri, finished: int):
    """A child RUNNING and `finished` FINISHED: the blocking loss holds job `finished` + 1."""
    def check():
        runs = [r for r in all_runs(uri) if "mlflow.parentRunId" in r.data.tags]
        statuses = [r.info.status for r in runs]
        return statuses.count("RUNNING") == 1 and statuses.count("FINISHED") == finished
    return check


def _figures(found: dict) -> dict:
    return {k: found[k] for k in COMPLETE}


def test_kill_9_half_way_then_resume_runs_only_what_is_missing(gdexp, store, tmp_path):
    sweep_dir = tmp_path / "sweep"
    process = start_gdexp(*SWEEP, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    wait_for(_started(sweep_dir), 120, "the sweep's plan")
    wait_for(lambda: finished_children(store) >= GRID // 2, 300, "half of the runs FINISHED")
    assert stop(process, signal.SIGKILL)[0] == -signal.SIGKILL
    before = census(store, sweep_dir)
    assert before["parent"] == "RUNNING" and GRID // 2 <= before["finished"] < GRID, before

    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0, err
    assert f"{GRID - before['finished']} to go" in out and "Traceback" not in err
    after = census(store, sweep_dir)
    assert _figures(after) == COMPLETE and after["finished"] == GRID == after["active_children"], after

    code, out, _ = gdexp("resume", str(sweep_dir))  # twice: nothing to do
    assert code == 0 and "0 to go, 0 stale runs closed" in out
    assert census(store, sweep_dir) == after


def test_kill_9_with_a_run_in_flight_closes_it_and_runs_its_config_again(gdexp, store, tmp_path, blocking_loss):
    sweep_dir = tmp_path / "sweep"
    process = start_gdexp(*BLOCKED, *blocking_loss, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
                          GDEXP_TEST_BLOCK="4")
    wait_for(_in_flight(store, finished=3), 180, "job 4 in flight")
    assert stop(process, signal.SIGKILL)[0] == -signal.SIGKILL
    assert census(store, sweep_dir)["running"] == 2  # the parent and job 4: what kill -9 leaves

    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0, err
    assert "3 to go, 1 stale run closed (3 of 6 planned runs FINISHED)" in out
    assert "1 run replaced by a FINISHED run of the same config deleted from the sweep" in out
    after = census(store, sweep_dir)
    assert _figures(after) == COMPLETE and after["finished"] == 6 == after["active_children"], after
    stale = [r for r in all_runs(store) if r.info.lifecycle_stage == "deleted"]
    assert len(stale) == 1 and stale[0].info.status == "KILLED" and "gdexp.superseded_by" in stale[0].data.tags


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_closes_the_sweep_killed_and_says_how_to_finish(gdexp, store, tmp_path, blocking_loss, sig,
                                                                 status):
    sweep_dir = tmp_path / "sweep"
    process = start_gdexp(*BLOCKED, *blocking_loss, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
                          GDEXP_TEST_BLOCK="4")
    wait_for(_in_flight(store, finished=3), 180, "job 4 in flight")
    code, out, err = stop(process, sig)
    assert code == status, err
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert said == [f"gdexp: interrupted: 3 of 6 runs recorded; to finish: gdexp resume {sweep_dir}"], err
    stopped = census(store, sweep_dir)
    assert stopped["running"] == 0 and stopped["parent"] == "KILLED" and stopped["finished"] == 3, stopped
    killed = [r for r in all_runs(store) if r.info.status == "KILLED" and "mlflow.parentRunId" in r.data.tags]
    assert len(killed) == 1  # job 4, in flight

    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0 and "3 to go, 0 stale runs closed" in out, err
    assert _figures(census(store, sweep_dir)) == COMPLETE


def test_sigterm_stops_a_single_run_killed(store, tmp_path, blocking_loss):
    process = start_gdexp(*blocking_loss, "+loss.scale=1", cwd=tmp_path, GDEXP_TEST_BLOCK="1")
    wait_for(lambda: [r for r in all_runs(store) if r.info.status == "RUNNING"], 180, "the run RUNNING")
    code, out, err = stop(process, signal.SIGTERM)
    assert code == 143 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("gdexp:")] == [
        "gdexp: interrupted (SIGTERM); the run in flight is marked KILLED"]
    assert [r.info.status for r in all_runs(store)] == ["KILLED"]


@pytest.mark.parametrize("path", ["fast", "client"])
def test_ctrl_c_inside_a_store_write_lands_after_it(gdexp, store, tmp_path, monkeypatch, path):
    """SIGINT arrives inside the third run's write: on the fast path inside its transaction
    (gdexp.tracking.fast.write, one chunk a run here), on MLflow's client path between the params
    and the metrics of its log_batch. The write ends whole, then the sweep stops; nothing is
    left RUNNING or locked, and resume runs exactly what is missing."""
    def interrupt(k):
        if k == 3:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # where the interrupt would land, half-way through the write

    sweep_dir = tmp_path / "sweep"
    with pytest.MonkeyPatch.context() as fault:  # the fault for this sweep only
        writes = on_each_write(fault, path, "_log_metrics", interrupt)
        code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=0.001,0.002,0.003,0.004,0.005",
                               "stopping.maxiter=40", "hydra.sweeper.max_batch_size=1", f"hydra.sweep.dir={sweep_dir}")
    # fast: the third run's transaction commits whole (the run FINISHED); client: its log_batch
    # ends whole, then the run is closed KILLED
    recorded, third_status = (3, "FINISHED") if path == "fast" else (2, "KILLED")
    assert code == 130 and "Traceback" not in err, err
    assert [line for line in err.splitlines() if "interrupted" in line] == [
        f"gdexp: interrupted: {recorded} of 5 runs recorded; to finish: gdexp resume {sweep_dir}"]
    third = next(r for r in all_runs(store) if r.info.run_id == writes[2])
    assert third.info.status == third_status
    from mlflow import MlflowClient

    assert len(MlflowClient(store).get_metric_history(writes[2], "loss")) == 41  # its write whole: every point
    stopped = census(store, sweep_dir)
    assert stopped["running"] == 0 and stopped["parent"] == "KILLED" and stopped["finished"] == recorded

    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0 and f"{5 - recorded} to go" in out, err
    assert _figures(census(store, sweep_dir)) == COMPLETE


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_ctrl_c_as_a_run_is_created_leaves_it_killed(gdexp, store, tmp_path, monkeypatch, sweep):
    """The interrupt, held during the write that creates the run, lands right after it: before the
    code that would close the run. The run is closed KILLED all the same. (MLflow's client path, a
    tracking server's, forced here: the fast path creates a sweep's runs whole, FINISHED; a single
    run's fast path is the next test.)"""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from gdexp.tracking.store import Store

    monkeypatch.setattr("gdexp.tracking.bulk._fast", lambda store: False)
    monkeypatch.setattr(Store, "_find_by_sql", lambda self: None)

    real, created = SqlAlchemyStore.create_run, []

    def create_run(self, *args, **kwargs):
        created.append(1)
        if len(created) == (2 if sweep else 1):  # a sweep's first run is its parent
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SqlAlchemyStore, "create_run", create_run)
    args = ["-m", "optimizer.lr=0.001,0.002", f"hydra.sweep.dir={tmp_path / 'sweep'}"] if sweep else []
    code, out, err = gdexp(*args, "loss=booth", "stopping.maxiter=20")
    monkeypatch.setattr(SqlAlchemyStore, "create_run", real)
    assert code == 130 and "Traceback" not in err, err
    assert sorted(r.info.status for r in all_runs(store)) == (["KILLED", "KILLED"] if sweep else ["KILLED"])


@pytest.mark.parametrize("write", [1, 2], ids=["creating", "recording"])
def test_ctrl_c_inside_a_single_runs_write_below_the_api_leaves_it_killed(gdexp, store, monkeypatch, write):
    """A single run written below MLflow's API (gdexp.tracking.record): Ctrl-C inside the write
    that creates it RUNNING lands after that write and leaves the run KILLED, its params kept;
    inside the write that records it whole, the run stays FINISHED (as on MLflow's client path,
    where the interrupt lands after set_terminated). Exit 130 either way."""
    from gdexp.tracking.fast import write as fast_write

    real, writes = fast_write.write_runs, []

    def write_runs(*args, **kwargs):
        writes.append(1)
        if len(writes) == write:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast_write, "write_runs", write_runs)
    code, out, err = gdexp("loss=booth", "optimizer.lr=0.01", "stopping.maxiter=20")
    assert code == 130 and "Traceback" not in err and "the run in flight is marked KILLED" in err, err
    (run,) = all_runs(store)
    assert run.info.status == ("KILLED", "FINISHED")[write - 1] and run.data.params["optimizer.lr"] == "0.01"
    assert ("gdexp.status" in run.data.tags) == (write == 2)


def test_resume_refuses_a_sweep_whose_process_still_runs(gdexp, store, tmp_path, blocking_loss):
    sweep_dir = tmp_path / "sweep"
    process = start_gdexp(*BLOCKED, *blocking_loss, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
                          GDEXP_TEST_BLOCK="2")
    try:
        wait_for(_in_flight(store, finished=1), 180, "job 2 in flight")
        code, out, err = gdexp("resume", str(sweep_dir))
    finally:
        stop(process, signal.SIGKILL)
    assert code == 2 and f"its process (pid {process.pid}) is still running" in err, err
    assert census(store, sweep_dir)["running"] == 2  # untouched: the parent and job 2


def test_ctrl_c_before_a_single_run_exists_says_nothing_was_recorded(gdexp, store, monkeypatch):
    """Ctrl-C while a single run is still being planned (an MLP's data loading, the store opening):
    the line says so, and claims no KILLED run that does not exist."""
    import gdexp.hydra.task as task

    def interrupted(spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(task, "single_store", interrupted)
    code, out, err = gdexp("loss=booth", "stopping.maxiter=5")
    assert code == 130 and "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("gdexp:")] == [
        "gdexp: interrupted (SIGINT); before its MLflow run was created: nothing recorded"]
    assert all_runs(store) == []
