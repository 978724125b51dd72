"""load_runs' fast reader (gdexp/tracking/fast/read.py) against MLflow's client, column by column.

The same store is read both ways (reader.runs_table with fast=True and fast=False) and the two
tables must be equal: values, dtypes, and even which missing value (None or NaN) sits in a cell.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gdexp.core.errors import NotFound
from gdexp.tracking import reader
from gdexp.tracking.fast import fence
from gdexp.tracking.reader import load_runs, runs_table


def assert_same_table(fast: pd.DataFrame, slow: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    for column in fast.columns[fast.dtypes == object]:  # None and NaN both pass assert_frame_equal
        assert fast[column].map(type).tolist() == slow[column].map(type).tolist(), column


def both_ways(uri: str, **query) -> pd.DataFrame:
    fast, slow = runs_table(uri, fast=True, **query), runs_table(uri, fast=False, **query)
    assert_same_table(fast, slow)
    return fast


@pytest.fixture(scope="module")
def varied_store(tmp_path_factory):
    """Sweeps with seeds, diverged runs and params too long for MLflow, in two experiments, and
    runs no sweep leaves: killed, still running, deleted. Built once for the module (read only)."""
    from cli_runner import run_cli
    from mlflow import MlflowClient
    from mlflow.entities import Param

    folder = tmp_path_factory.mktemp("varied")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    sweeps = [["-m", "loss=rosenbrock", "optimizer=gd", "optimizer.lr=1e-4,1e-3,1e-2", "seed=0,1",
               "stopping.maxiter=100"],
              ["-m", "loss=quadratic", "loss.eigenvalues=" + json.dumps([1.0 + i / 100 for i in range(1200)]).replace(" ", ""),
               "optimizer.lr=0.001,0.002", "stopping.maxiter=5"],
              ["-m", "tracking.experiment=other", "optimizer=adam,gd", "optimizer.lr=0.01", "stopping.maxiter=50"],
              ["tracking.experiment=other", "loss=booth", "optimizer.lr=0.01", "stopping.maxiter=50"]]
    # first: pruned runs (successive halving), whose gdexp.pruned_step tag is a column too
    sweeps.insert(0, ["-m", "tracking.experiment=pruned", "loss=rosenbrock", "optimizer.lr=logspace(1e-5,1e-3,9)",
                      "stopping.maxiter=200", "stopping.prune=halving", "stopping.prune_min_steps=20"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("GDEXP_PARENT_RUN_ID", raising=False)
        patch.chdir(folder)
        for args in sweeps:
            assert run_cli(*args) == 0, args
    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name("gdexp").experiment_id
    killed = cl.create_run(exp, run_name="killed", tags={"gdexp.config_hash": "abc"})
    cl.log_batch(killed.info.run_id, params=[Param("optimizer.lr", "0.5")])
    cl.set_terminated(killed.info.run_id, "KILLED")
    cl.create_run(exp, run_name="")  # RUNNING, named by MLflow
    children = load_runs(experiment="gdexp", tracking_uri=uri)
    cl.delete_run(children.loc[children["loss"] == "rosenbrock", "run_id"].iloc[0])
    return uri


def test_fast_reader_reads_what_the_client_reads(varied_store):
    from mlflow import MlflowClient

    cl = MlflowClient(varied_store)
    latest = both_ways(varied_store)
    assert len(latest) == 2 and set(latest["optimizer"]) == {"adam", "gd"}  # the last sweep: experiment other
    table = both_ways(varied_store, experiment="gdexp")
    assert len(table) == 6 + 2 - 1 + 2  # the sweeps' children, one deleted, killed and running
    assert set(table["status"]) >= {"killed", "running", "diverged"}
    long = table.dropna(subset=["loss.eigenvalues"])["loss.eigenvalues"]
    assert [len(json.loads(v)) for v in long] == [1200, 1200]  # read whole from config.yaml
    assert table["iterations"].dtype == "Int64" and table["seed"].dtype == float  # missing in 2 runs
    assert table["seed"].isna().sum() == 2 and table["optimizer.lr"].notna().sum() == 8
    assert both_ways(varied_store, sweep=table["sweep_id"].dropna().iloc[0])["seed"].dtype == np.int64
    other = both_ways(varied_store, experiment="other")
    assert len(other) == 3 and set(other["experiment"]) == {"other"}
    sweeps = cl.search_runs([e.experiment_id for e in cl.search_experiments()], "tags.`gdexp.sweep` = 'true'")
    assert len(sweeps) == 4
    for parent in sweeps:
        runs = both_ways(varied_store, sweep=parent.info.run_id)
        assert (runs["sweep_id"] == parent.info.run_id).all() and len(runs) in (5, 2, 9)
    pruned = both_ways(varied_store, experiment="pruned")
    assert (pruned["status"] == "pruned").sum() >= 4
    assert (pruned["pruned_step"].notna() == (pruned["status"] == "pruned")).all()


def _odd_runs(uri: str) -> None:
    """Every status, NaN and infinite metrics, unicode, a run named by its tag only, a param cut by
    MLflow, two experiments: the fast write path's own sample (tests/tracking/test_fast_write.py), read both ways."""
    from test_fast_write import sample_records

    from gdexp.tracking.fast.write import write_runs
    from gdexp.tracking.store import client

    cl = client(uri)  # a SQLite store: a copy of a migrated one
    a, b = cl.create_experiment("a"), cl.create_experiment("b")
    records = sample_records(a, b)
    write_runs(uri, records)
    parent = records[0].run_id
    assert len(both_ways(uri, experiment="a")) == 21 and len(both_ways(uri, experiment="b")) == 6
    assert len(both_ways(uri, sweep=parent)) == 18  # the 24 children but the 6 in the other experiment


def test_fast_reader_reads_odd_runs_like_the_client(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _odd_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _unjoinable_runs(uri: str, monkeypatch) -> None:
    """The fast reader joins a run's keys and values into one string (fast.read._joined): a run
    with the separator inside a value or a key, or with a NULL tag value, is read row by row."""
    import sqlalchemy as sa

    from gdexp.tracking.fast import read
    from gdexp.tracking.fast.fence import _engine

    _odd_runs(uri)
    sep = read._SEP
    with _engine(uri).begin() as db:
        runs = db.execute(sa.text("SELECT run_uuid FROM params WHERE key = 'loss.name' ORDER BY run_uuid")).scalars().all()
        db.execute(sa.text("UPDATE params SET value = :v WHERE key = 'loss.name' AND run_uuid = :r"), {"v": f"a{sep}b", "r": runs[0]})
        db.execute(sa.text("INSERT INTO params (key, value, run_uuid) VALUES (:k, '1', :r)"), {"k": f"odd{sep}key", "r": runs[1]})
        db.execute(sa.text("UPDATE tags SET value = NULL WHERE key = 'gdexp.status' AND run_uuid = :r"), {"r": runs[2]})
        db.execute(sa.text("UPDATE tags SET value = :v WHERE key = 'gdexp.config_hash' AND run_uuid = :r"), {"v": sep, "r": runs[3]})
    asked = {"params": set(), "tags": set()}
    unclear = read._unclear

    def spy(sql, table, ids):
        asked[table].update(ids)
        return unclear(sql, table, ids)

    monkeypatch.setattr(read, "_unclear", spy)
    table = pd.concat([both_ways(uri, experiment=name) for name in ("a", "b")])
    assert asked == {"params": set(runs[:2]), "tags": set(runs[2:4])}  # only those, row by row
    rows = table.set_index("run_id")
    assert rows.at[runs[0], "loss"] == f"a{sep}b" and rows.at[runs[1], f"odd{sep}key"] == 1
    assert rows.at[runs[3], "config_hash"] == sep


def test_runs_whose_rows_cannot_be_joined_are_read_row_by_row_like_the_client(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _unjoinable_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", monkeypatch)


def test_postgresql_runs_whose_rows_cannot_be_joined_are_read_row_by_row(postgres_template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pg, template = postgres_template
    _unjoinable_runs(pg.uri(pg.create(template)), monkeypatch)


def test_fast_reader_reads_postgresql_like_the_client(postgres_template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pg, template = postgres_template
    uri = pg.uri(pg.create(template))
    assert fence.fast_path_available(uri)[0]
    _odd_runs(uri)
    assert readers_agree(uri) == 27  # StoreReader's SQL on PostgreSQL


def test_load_runs_takes_the_fast_reader_where_the_fence_allows(varied_store, monkeypatch):
    def refused(*args, **kwargs):
        raise AssertionError("the client was asked")

    with monkeypatch.context() as patch:
        patch.setattr(reader, "_client_rows", refused)
        assert len(load_runs(experiment="gdexp", tracking_uri=varied_store)) == 9
    monkeypatch.setattr(fence, "TESTED_REVISION", "0000")  # another schema: MLflow's client reads it
    monkeypatch.setattr("gdexp.tracking.fast.read.read_runs", refused)
    assert len(load_runs(experiment="gdexp", tracking_uri=varied_store)) == 9
    with pytest.raises(fence.FastPathUnavailable, match="0000"):
        runs_table(varied_store, fast=True)


@pytest.mark.parametrize("query, line", [
    ({"experiment": "nope"}, "experiment='nope': no experiment named 'nope' in {uri}"),
    ({"sweep": "0" * 32}, "sweep='00000000000000000000000000000000': no such run in {uri}"),
    ({}, "tracking.uri='{uri}': no sweep in this store; run one with `gdexp -m ...`"),
])
def test_both_readers_refuse_alike(gdexp, store, query, line):
    code, _, err = gdexp("stopping.maxiter=5")  # one run, no sweep
    assert code == 0, err
    for fast in (True, False):
        with pytest.raises(NotFound) as exc:
            runs_table(store, fast=fast, **query)
        assert str(exc.value) == line.format(uri=store)


def same_run(fast, slow) -> None:
    """A StoredRun read by SQL and MLflow's Run: every field gdexp reads, NaN metrics included."""
    from dataclasses import fields

    for f in fields(fast.info):
        assert getattr(fast.info, f.name) == getattr(slow.info, f.name), f.name
    for part in ("params", "tags", "metrics"):
        assert repr(sorted(getattr(fast.data, part).items())) == repr(sorted(getattr(slow.data, part).items())), part


def readers_agree(uri: str) -> int:
    """StoreReader's SQL reads and its client reads of every run and experiment of the store."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    fast, slow = reader.StoreReader(uri), reader.StoreReader(uri, fast=False)
    assert fast.fast and not slow.fast
    assert fast.experiment_ids() == slow.experiment_ids()
    cl = MlflowClient(uri)
    experiments = cl.search_experiments(view_type=ViewType.ALL)
    runs = cl.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=50000)
    for run in runs:
        same_run(fast.run(run.info.run_id, "RUN_ID"), slow.run(run.info.run_id, "RUN_ID"))
    try:
        same_run(fast.latest_sweep(), slow.latest_sweep())
    except NotFound as exc:  # no sweep in the store: both say so alike
        with pytest.raises(NotFound) as other:
            slow.latest_sweep()
        assert str(other.value) == str(exc)
    for experiment in experiments:
        if experiment.lifecycle_stage == "active":
            fast.check_experiment(experiment.name, "--experiment")  # passes
    for bad in ("0" * 32, "not-an-id"):
        lines = set()
        for store in (fast, slow):
            with pytest.raises(NotFound) as exc:
                store.run(bad, "--sweep")
            lines.add(str(exc.value))
        assert lines == {f"--sweep='{bad}': no such run in {uri}"}
    return len(runs)


def test_store_reader_reads_runs_as_mlflows_client_does(varied_store):
    assert readers_agree(varied_store) >= 25  # parents, children, killed, running, deleted


def test_store_reader_reads_odd_runs_as_mlflows_client_does(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _odd_runs(uri)
    cl = MlflowClient(uri)
    cl.create_run(cl.create_experiment("gone"), run_name="in a deleted experiment")
    cl.delete_experiment(cl.get_experiment_by_name("gone").experiment_id)
    assert readers_agree(uri) == 28
    lines = set()
    for store in (reader.StoreReader(uri), reader.StoreReader(uri, fast=False)):
        for name in ("gone", "nope"):
            with pytest.raises(NotFound) as exc:
                store.check_experiment(name, "--experiment")
            lines.add(str(exc.value))
        assert "gone" not in store.experiment_ids()
    assert len(lines) == 2 and any("is deleted; restore it" in line for line in lines)
