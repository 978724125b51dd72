"""Hostile input (issue 15): stores gdexp cannot use, files that are not data, names too long, data
near float64's limit. Each: one line `gdexp: error: KEY=VALUE: reason`, exit status 2, no run."""
from __future__ import annotations

import os
import socket
import sqlite3

import pytest
from mlflow import MlflowClient

from fault_tools import all_runs

pytestmark = pytest.mark.faults

RUN = ["loss=booth", "stopping.maxiter=5"]
SWEEP = ["-m", "loss=booth", "optimizer.lr=0.01,0.02", "stopping.maxiter=5"]


def _one_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gdexp: error: "), (code, err)
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("uri, reason", [
    ("garbage", "not a store gdexp can record runs in"),
    ("mysql://x", "cannot use this database URL (No module named"),
    ("ftp://x", "not a store gdexp can record runs in"),
    ("sqlite:////dev/null", "/dev/null is not a regular file"),
    ("sqlite:///{tmp}/data.csv", "is not an SQLite database"),
    ("sqlite:///", "is a folder; name a database file in it"),
    ("sqlite:///{tmp}", "is a folder; name a database file in it"),
    ("sqlite:////nonexistent/dir/x.db", "the folder /nonexistent/dir does not exist; gdexp does not create"),
    ("http://127.0.0.1:{port}", "the tracking server does not answer"),  # a single run too (was 17 s of retries)
    ("file://{tmp}/mlruns", "MLflow's file store (file:) is in maintenance mode"),  # was MLflow's 89-line traceback
], ids=["garbage", "mysql", "ftp", "dev-null", "a-csv-file", "empty-path", "a-folder", "missing-folder", "server-down",
             "file-store"])
def test_a_store_gdexp_cannot_use_is_one_line(gdexp, store, tmp_path, monkeypatch, uri, reason):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / "data.csv").write_text("x,y\n1,2\n3,4\n")
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    uri = uri.format(tmp=tmp_path, port=port)
    for args in (RUN, SWEEP):
        line = _one_line(*gdexp(*args, f"tracking.uri={uri}")[::2])
        assert line.startswith("gdexp: error: tracking.uri=") and reason in line, line
    assert not (tmp_path / "mlflow.db").exists() and not os.path.exists("/nonexistent")
    assert (tmp_path / "data.csv").read_text() == "x,y\n1,2\n3,4\n"  # a file that is no store is left alone


@pytest.mark.parametrize("revision, reason", [
    ("f4a9b2c7d1e6", "is from a newer MLflow than the installed"),       # MLflow 3.18's head
    ("0584bdc529eb", "back the store up, then migrate it: mlflow db upgrade sqlite:///"),  # an older one of 3.17's
])
def test_a_store_of_another_mlflow_schema_is_one_line(gdexp, store, tmp_path, revision, reason):
    """MLflow's client refuses any store whose schema is not its own head, with a page of
    traceback: a single run, a sweep and a reader say why in one line, and leave the store alone."""
    assert gdexp("stopping.maxiter=5")[0] == 0
    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()
    before = path.read_bytes()
    for args in (RUN, SWEEP):
        line = _one_line(*gdexp(*args)[::2])
        assert line.startswith(f"gdexp: error: tracking.uri='{store}': the store's schema ({revision})"), line
        assert reason in line, line
    assert path.read_bytes() == before


def test_a_store_the_fast_path_was_not_tested_on_is_written_through_mlflows_client_saying_so(
        gdexp, store, monkeypatch):
    """A single run where the fence says no (here: an installed MLflow whose schema the fast path
    was not tested on, as MLflow 3.18 would be) goes through MLflow's client, saying so once."""
    from gdexp.tracking.fast import fence

    assert gdexp("stopping.maxiter=5")[0] == 0
    monkeypatch.setattr(fence, "TESTED_REVISION", "ffffffffffff")
    code, out, err = gdexp("stopping.maxiter=7")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "through MLflow's client" in line]
    assert len(lines) == 1 and "ffffffffffff" in lines[0], err
    cl = MlflowClient(store)
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()], order_by=["attributes.start_time"])
    assert [r.data.params["stopping.maxiter"] for r in runs] == ["5", "7"]
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.fixture
def hostile_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")  # reading it would wait for a writer forever
    with open(tmp_path / "huge.csv", "wb") as f:  # sparse: 300 MiB that take no room
        f.truncate(300 * 2**20)
    (tmp_path / "dup.csv").write_text("x,x,y\n1,2,3\n2,3,5\n3,4,7\n")
    return tmp_path


@pytest.mark.parametrize("args, key, reason", [
    (["tracking.experiment=" + "e" * 444], "tracking.experiment", "is 444 characters; at most 200"),
    (["loss=linear_regression", "loss.data=fifo"], "loss.data", "not a regular file"),
    (["loss=linear_regression", "loss.data=/dev/zero"], "loss.data", "not a regular file"),
    (["loss=linear_regression", "loss.data=huge.csv"], "loss.data", "is larger than 256 MiB"),
    (["loss=linear_regression", "loss.data=dup.csv"], "loss.data", "repeats the column name(s) 'x'"),
    (["loss=mlp", "loss.dataset=null", "loss.data=fifo"], "loss.data", "not a regular file"),
    (["loss=mlp", "loss.dataset=null", "loss.data=/dev/zero"], "loss.data", "not a regular file"),
    (["loss=mlp", "loss.dataset=null", "loss.data=huge.csv"], "loss.data", "is larger than 256 MiB"),
    (["loss=mlp", "loss.dataset=null", "loss.data=dup.csv"], "loss.data", "repeats the column name(s) 'x'"),
    (["loss=beale", "init=9223372036854775807"], "init", "must be a list"),  # found by test_properties
    (["loss=beale", "init=[[1,2]]"], "init", "needs 2 values"),
], ids=["name-444", "fifo", "dev-zero", "over-256MiB", "x,x,y", "mlp-fifo", "mlp-dev-zero", "mlp-over-256MiB",
        "mlp-x,x,y", "init-scalar", "init-nested"])
def test_a_hostile_value_is_one_line(gdexp, store, hostile_files, args, key, reason):
    for mode in ([], ["-m"]):
        line = _one_line(*gdexp(*mode, *args, "stopping.maxiter=5")[::2])
        assert line.startswith(f"gdexp: error: {key}=") and reason in line, line
    assert all_runs(store) == []


# One start where each loss is not finite: inf or nan at step 0 (was: "diverged at step 0").
FAR = {"quadratic": "init=[1e200,1e200,1e200]", "rosenbrock": "init=[1e120,1]", "beale": "init=[1e120,1e120]",
       "booth": "init=[1e200,1e200]", "himmelblau": "init=[1e120,1e120]", "rastrigin": "init=[1e200,1e200]",
       "expression": "init=[1e120,1]", "linear_regression": "init=[1e200,1e200]",
       "logistic_regression": "init=[1e308,1e308,1e308]"}


@pytest.mark.parametrize("loss", sorted(FAR))
def test_a_non_finite_start_is_an_input_error_for_every_loss(gdexp, store, loss):
    line = _one_line(*gdexp(f"loss={loss}", FAR[loss], "stopping.maxiter=5")[::2])
    assert line.startswith("gdexp: error: init=") and "at the start point: an input error, not a divergence" in line
    assert all_runs(store) == []


def test_data_near_1e300_is_an_input_error_or_is_standardized(gdexp, store, tmp_path):
    (tmp_path / "big.csv").write_text("x,y\n1e300,1e300\n2e300,3e300\n3e300,1e300\n4e300,2e300\n")
    line = _one_line(*gdexp("loss=linear_regression", "loss.data=big.csv", "stopping.maxiter=5")[::2])
    assert line.startswith("gdexp: error: loss.x='x': column 'x' in big.csv holds values up to 4e+300") and \
        "their squares overflow float64" in line
    # The MLP standardizes its data first: the same file is fitted, finite from the start.
    code, out, err = gdexp("loss=mlp", "loss.dataset=null", "loss.data=big.csv", "loss.task=regression",
                           "loss.val_fraction=0", "stopping.maxiter=5")
    assert code == 0, err
    (run,) = all_runs(store)
    assert run.info.status == "FINISHED" and "RuntimeWarning" not in err
    loss = run.data.metrics
    assert 0 < loss["final_loss"] < 2  # standardized (about 1 at the start), not zeroed or overflowed


def test_every_registered_loss_has_a_far_start_here():
    from pathlib import Path

    conf = Path(__file__).resolve().parents[2] / "conf" / "loss"
    # mlp, torch: their parameters are thousands of weights (their start is drawn, not given),
    # custom: tests/specs/test_user_loss.py
    assert sorted(FAR) == sorted(p.stem for p in conf.glob("*.yaml") if p.stem not in ("mlp", "torch", "custom"))


def test_a_store_another_process_is_migrating_is_waited_for_not_refused(gdexp, store, tmp_path):
    """While another process's MLflow creates a store, its migrations step through every older
    revision: that is not a store of an older schema (the refusal above), and the run waits."""
    import threading
    import time

    from gdexp.tracking.fast import fence

    assert gdexp("stopping.maxiter=5")[0] == 0
    path = tmp_path / "mlflow.db"
    steps = ["0584bdc529eb", "7ac759974ad8", "bf29a5ff90ea", fence.mlflow_migration_head()]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (steps[0],))
    conn.close()

    def migrate():
        for revision in steps[1:]:
            time.sleep(0.4)
            with sqlite3.connect(path) as step:
                step.execute("UPDATE alembic_version SET version_num = ?", (revision,))
            step.close()

    migrating = threading.Thread(target=migrate)
    migrating.start()
    code, out, err = gdexp("stopping.maxiter=7")
    migrating.join()
    assert code == 0 and "schema" not in err, err
    assert sorted(r.data.params["stopping.maxiter"] for r in all_runs(store)) == ["5", "7"]
