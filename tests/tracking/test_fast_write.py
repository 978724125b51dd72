"""gdexp.tracking.fast: runs written by the fast path read back exactly as runs written by MlflowClient.

Every equivalence test writes the same RunRecords twice, into two copies of one
store: once with `write_runs` (SQL below MLflow's API), once with
`write_runs_via_client` (create_run, log_batch, set_terminated). Then it
compares everything MLflow's client returns (get_run, get_metric_history, the
UI's sampled history, search_runs with filters and orderings) and the raw rows
of MLflow's five run tables, run ids mapped to the records' order.

On SQLite always; on PostgreSQL (marked `scaleout`) against a throwaway server
on 127.0.0.1 (initdb + pg_ctl in a temporary folder, as tests/e2e/test_scaleout.py
starts one): it skips on a developer's machine without PostgreSQL and fails in
CI (CI=true).
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdexp.tracking.fast import records
from gdexp.tracking.fast import fence
from gdexp.tracking.fast.fence import fast_path_available
from gdexp.tracking.fast.records import RunRecord
from gdexp.tracking.fast.write import write_runs, write_runs_via_client

T0 = 1_700_000_000_000  # ms: explicit times, so both paths store the same ones


# --- stores ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """One migrated SQLite store per session (migrations cost seconds); tests copy it."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def sqlite_pair(template_db, tmp_path, monkeypatch):
    """(fast store URI, client store URI): two copies of the template."""
    monkeypatch.chdir(tmp_path)  # experiments' default artifact root: ./mlruns, the same for both
    uris = []
    for name in ("fast", "client"):
        (tmp_path / name).mkdir()
        shutil.copy(template_db, tmp_path / name / "mlflow.db")
        uris.append(f"sqlite:///{tmp_path / name / 'mlflow.db'}")
    return tuple(uris)


@pytest.fixture
def postgres_pair(postgres_template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pg, template = postgres_template
    return pg.uri(pg.create(template)), pg.uri(pg.create(template))


# --- the runs written both ways ----------------------------------------------------------------

def _curve(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(-np.arange(n) / 40.0) + 1e-3 * rng.random(n)


def sample_records(exp_a: str, exp_b: str) -> list[RunRecord]:
    """Runs that exercise what MLflow's store does on write.

    A parent and 24 children (in two experiments) with sampled curves, unicode
    params and tags, every status, NaN/+inf/-inf points, exact duplicates, ties on
    step and timestamp for the latest-value rule, numpy and int values, a param
    longer than MLflow keeps, a run named by its `mlflow.runName` tag only, and
    a `mlflow.user` tag.
    """
    parent = RunRecord(exp_a, run_name="sweep-λ", tags={"gdexp.sweep": "lr ∈ [1e-5, 1e-2]"},
                       params={"sweep.size": 24}, status="FINISHED", start_time=T0 - 1000, end_time=T0 + 90_000)
    records = [parent]
    for i in range(24):
        steps = np.unique(np.r_[np.geomspace(1, 2999, 40).astype(int), np.linspace(0, 2999, 60).astype(int)])
        loss = _curve(3000, i)[steps]
        if i % 5 == 1:
            loss[-3:] = [np.inf, np.nan, -np.inf]  # a run that blew up
        ts = T0 + 1000 * i
        metrics = [("loss", float(v), ts, int(s)) for s, v in zip(steps, loss)]
        metrics += [("grad_norm", v, ts, s) for s, v in zip(steps.tolist(), (loss * 2).tolist())]
        plain = i % 3 == 0  # only Python floats and ints: write_runs' C-level branch
        metrics += [("final_loss", float(loss[-1]), ts, 0), ("best_loss", float(np.nanmin(loss)), ts, 0),
                    ("iterations", float(steps[-1]) if plain else int(steps[-1]), ts, 0),
                    ("lr", 10 ** (-5 + i / 8) if plain else np.float64(10 ** (-5 + i / 8)), ts, 0)]
        if i % 6 == 0:  # keys interleaved, a later timestamp at an earlier step
            metrics += [("final_loss", 9.0, ts + 1, 0), ("grad_norm", -1.0, ts + 5, 0), ("final_loss", 7.0, ts - 1, 1)]
        status = ("FINISHED", "FAILED", "KILLED")[i % 3]
        tags = {"mlflow.parentRunId": parent.run_id, "gdexp.status": "diverged" if i % 5 == 1 else "converged",
                "gdexp.note": f"run №{i} — ✓", "gdexp.config_hash": f"{i:08x}"}
        params = {"optimizer.lr": repr(10 ** (-5 + i / 8)), "loss.name": "rosenbrock",
                  "init": [-1.5, 2.0], "optimizer.momentum": None if i % 2 else 0.9, "ünïcode.键": "值"}
        records.append(RunRecord(exp_b if i % 4 == 3 else exp_a, run_name=f"lr-{i:02d}", tags=tags,
                                 params=params, metrics=metrics, status=status,
                                 start_time=T0 + i, end_time=T0 + 60_000 + i))
    # The latest-value rule: largest step, then timestamp, then value; exact ties keep the first.
    records.append(RunRecord(exp_a, run_name="ties", status="FINISHED", start_time=T0 + 100, end_time=T0 + 101, metrics=[
        ("tie_step", 1.0, T0 + 5, 7), ("tie_step", 3.0, T0 + 9, 7), ("tie_step", 2.0, T0 + 9, 7),
        ("tie_step", 9.0, T0 + 99, 6),
        ("tie_all", 4.0, T0, 3), ("tie_all", 4.0, T0, 3), ("tie_all", -1.0, T0, 3),
        ("nan_last", 1.0, T0, 1), ("nan_last", float("nan"), T0, 2),
        ("nan_vs_zero", float("nan"), T0, 5), ("nan_vs_zero", 0.0, T0, 5), ("nan_vs_zero", float("nan"), T0, 5),
        ("zero_vs_nan", 0.0, T0, 5), ("zero_vs_nan", float("nan"), T0, 5),
        ("inf_ties", float("inf"), T0, 1), ("inf_ties", 1.7976931348623157e308, T0, 1),
        ("neg_inf", float("-inf"), T0, 4), ("neg_inf", -5.0, T0, 3),
        ("signed_zero", -0.0, T0, 1), ("signed_zero", 0.0, T0, 1),
        ("flag", True, T0, 0), ("big_int", 2 ** 53 + 1, T0, 0), ("np_int_step", 0.5, np.int64(T0), np.int32(3)),
        ("tiny", 5e-324, T0, 0), ("huge_step", 1.0, T0, 2 ** 62),
        ("trailing newline\n", 1.0, T0, 0),  # passes MLflow's name rule (its regex ends in $)
    ]))
    records.append(RunRecord(exp_a, tags={"mlflow.runName": "named-by-tag", "mlflow.user": "ada"},
                             params={"long": "x" * 7000}, status="FAILED", start_time=T0 + 200, end_time=T0 + 202))
    return records


# --- what MLflow's client returns ------------------------------------------------------------

SEARCHES = [  # each ordering ends on the run name: MLflow breaks remaining ties by run id
    ("", ["attributes.start_time ASC"]),
    ("metrics.loss < 1", ["metrics.final_loss ASC", "attributes.run_name ASC"]),
    ("metrics.final_loss > 0.05", ["metrics.final_loss DESC", "attributes.run_name ASC"]),
    ("metrics.best_loss <= 0.1", ["metrics.iterations DESC", "attributes.run_name ASC"]),
    ("params.`loss.name` = 'rosenbrock'", ["params.`optimizer.lr` DESC", "attributes.run_name ASC"]),
    ("params.`ünïcode.键` = '值'", ["attributes.run_name DESC"]),
    ("tags.`gdexp.status` = 'diverged'", ["metrics.loss ASC", "attributes.run_name ASC"]),
    ("tags.`gdexp.note` LIKE '%✓'", ["tags.`gdexp.config_hash` DESC", "attributes.run_name ASC"]),
    ("attributes.status = 'FAILED'", ["attributes.end_time DESC", "attributes.run_name ASC"]),
    ("attributes.run_name LIKE 'lr-1%'", ["metrics.lr ASC", "attributes.run_name ASC"]),
    ("metrics.grad_norm >= 0", ["metrics.grad_norm ASC", "attributes.run_name ASC"]),
    ("", ["metrics.tie_step DESC", "attributes.run_name ASC"]),
    ("", ["metrics.loss DESC", "attributes.run_name ASC"]),
    ("attributes.user_id = 'ada'", ["attributes.run_name ASC"]),
]


def snapshot(uri: str, run_ids: list[str], exp_ids: list[str]) -> dict:
    """Everything MlflowClient returns about these runs, run ids replaced by their index.

    NaN becomes the string "nan" so that equal snapshots compare equal.
    """
    from mlflow import MlflowClient

    cl = MlflowClient(tracking_uri=uri)
    index = {rid: i for i, rid in enumerate(run_ids)}

    def norm(value):
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, str):
            for rid, i in index.items():
                value = value.replace(rid, f"<run {i}>")
        return value

    out = {"runs": [], "history": [], "searches": []}
    for rid in run_ids:
        run = cl.get_run(rid)
        info = {k: norm(v) for k, v in _info_dict(run.info).items()}
        out["runs"].append({"info": info,
                            "params": run.data.params,
                            "tags": {k: norm(v) for k, v in run.data.tags.items()},
                            "metrics": {k: norm(v) for k, v in run.data.metrics.items()}})
        history = {}
        for key in sorted(run.data.metrics):
            history[key] = [(norm(m.value), m.timestamp, m.step) for m in cl.get_metric_history(rid, key)]
            # What the UI's charts fetch: get-history-bulk-interval, 320 sampled points a run.
            sampled = cl._tracking_client.store.get_metric_history_bulk_interval(
                run_ids=[rid], metric_key=key, max_results=320, start_step=None, end_step=None)
            history[f"{key} (ui)"] = [(norm(m.value), m.timestamp, m.step) for m in sampled]
        out["history"].append(history)
    for filter_string, order_by in SEARCHES:
        found = cl.search_runs(exp_ids, filter_string=filter_string, order_by=order_by, max_results=1000)
        out["searches"].append((filter_string, order_by, [index[r.info.run_id] for r in found]))
    return out


def _info_dict(info) -> dict:
    return {"run_name": info.run_name, "status": info.status, "start_time": info.start_time,
            "end_time": info.end_time, "lifecycle_stage": info.lifecycle_stage, "user_id": info.user_id,
            "experiment_id": info.experiment_id, "artifact_uri": info.artifact_uri}


def table_rows(uri: str, run_ids: list[str]) -> dict:
    """MLflow's five run tables, raw, run ids replaced by their index, sorted."""
    import sqlalchemy as sa

    index = {rid: i for i, rid in enumerate(run_ids)}
    out = {}
    engine = sa.create_engine(uri)
    with engine.connect() as conn:
        for table in ("runs", "tags", "params", "metrics", "latest_metrics"):
            rows = []
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")).mappings():
                row = dict(row)
                row["run_uuid"] = index[row["run_uuid"]]
                if table == "runs":
                    row["artifact_uri"] = row["artifact_uri"].replace(run_ids[row["run_uuid"]], "<id>")
                if table == "tags" and row["key"] == "mlflow.parentRunId":
                    row["value"] = index[row["value"]]
                rows.append(tuple(sorted((k, repr(v)) for k, v in row.items())))
            out[table] = sorted(rows)
    engine.dispose()
    return out


def _experiments(uri: str, artifact_location: str) -> list[str]:
    from mlflow import MlflowClient

    cl = MlflowClient(tracking_uri=uri)
    return [cl.create_experiment("gdexp", artifact_location=artifact_location),
            cl.create_experiment("other")]


def _write_both(fast_uri: str, client_uri: str, artifacts: str):
    exp_fast, exp_client = _experiments(fast_uri, artifacts), _experiments(client_uri, artifacts)
    assert exp_fast == exp_client
    ok, reason = fast_path_available(fast_uri)
    assert ok, reason
    fast_ids = write_runs(fast_uri, sample_records(*exp_fast))
    client_ids = write_runs_via_client(client_uri, sample_records(*exp_client))
    return exp_fast, fast_ids, client_ids


def _assert_same(fast_uri, client_uri, exp_ids, fast_ids, client_ids):
    fast, client = snapshot(fast_uri, fast_ids, exp_ids), snapshot(client_uri, client_ids, exp_ids)
    for i, (a, b) in enumerate(zip(fast["runs"], client["runs"])):
        assert a == b, f"run {i}"
    for i, (a, b) in enumerate(zip(fast["history"], client["history"])):
        assert a == b, f"metric history of run {i}"
    for a, b in zip(fast["searches"], client["searches"]):
        assert a == b
    assert table_rows(fast_uri, fast_ids) == table_rows(client_uri, client_ids)
    return fast


def _spy_on_branches(monkeypatch) -> list:
    """Whether each run went through the C-level branch (True) or point by point (False)."""
    taken, plain = [], records._plain_rows

    def spy(*args):
        out = plain(*args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(records, "_plain_rows", spy)
    return taken


def test_sqlite_fast_path_reads_back_like_the_client_path(sqlite_pair, tmp_path, monkeypatch):
    fast_uri, client_uri = sqlite_pair
    taken = _spy_on_branches(monkeypatch)
    exp_ids, fast_ids, client_ids = _write_both(fast_uri, client_uri, (tmp_path / "art").as_uri())
    assert taken.count(True) == 6 and taken.count(False) == 19  # 25 runs with metrics
    fast = _assert_same(fast_uri, client_uri, exp_ids, fast_ids, client_ids)
    _check_known_values(fast)


@pytest.mark.scaleout
def test_postgres_fast_path_reads_back_like_the_client_path(postgres_pair, tmp_path):
    fast_uri, client_uri = postgres_pair
    assert fast_path_available(fast_uri)[0]
    exp_ids, fast_ids, client_ids = _write_both(fast_uri, client_uri, (tmp_path / "art").as_uri())
    fast = _assert_same(fast_uri, client_uri, exp_ids, fast_ids, client_ids)
    _check_known_values(fast)


def _updates(uri: str, run_id: str) -> dict:
    """What a sweep logs on a run after it exists (its parent's summary, a search's results): new and
    existing metric keys, points newer and older than the latest, a repeated point, NaN and inf,
    new params and a param logged again with its value, new and replaced tags, then KILLED."""
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    metrics = [("summary", 3.0, 0, 0), ("summary_nan", math.nan, 0, 0), ("summary_inf", -math.inf, 5, 1)]
    for key in sorted(run.data.metrics)[:2]:
        (last,) = [m for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)][-1:]
        metrics += [(key, last.value, last.timestamp, last.step),      # the same point again: not stored twice
                    (key, 1.5, last.timestamp + 1, last.step + 10),  # newer: the latest value
                    (key, -7.0, 0, 0)]                               # older: stored, not the latest
    params = {"summary_param": 1, **dict(list(run.data.params.items())[:1])}
    tags = {"gdexp.summary": "yes", **{k: "replaced" for k in list(run.data.tags)[:1] if not k.startswith("mlflow.")}}
    return {"metrics": metrics, "params": params, "tags": tags, "status": "KILLED", "end_time": T0 + 99}


def _update_both(fast_uri, client_uri, fast_ids, client_ids) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from gdexp.tracking.fast.write import update_run

    cl = MlflowClient(tracking_uri=client_uri)
    changes = [_updates(fast_uri, fast_id) for fast_id in fast_ids[:8]]
    assert sum(len(c["metrics"]) > 3 for c in changes) >= 3  # runs with curves: latest values moved, kept
    for fast_id, client_id, change in zip(fast_ids, client_ids, changes):
        assert change == _updates(client_uri, client_id)
        assert update_run(fast_uri, fast_id, **change)
        cl.log_batch(client_id, metrics=[Metric(*m) for m in change["metrics"]],
                     params=[Param(k, str(v)) for k, v in change["params"].items()],
                     tags=[RunTag(k, v) for k, v in change["tags"].items()])
        cl.set_terminated(client_id, status=change["status"], end_time=change["end_time"])


def test_sqlite_update_run_logs_and_closes_like_the_client(sqlite_pair, tmp_path):
    """update_run (a sweep's parent closed, a search's results logged, below MLflow's API) leaves
    the store as log_batch + set_terminated through MLflow's client leave it; where MLflow would
    refuse (a param logged again with another value, a run not there), it writes nothing."""
    from gdexp.tracking.fast.write import update_run

    fast_uri, client_uri = sqlite_pair
    exp_ids, fast_ids, client_ids = _write_both(fast_uri, client_uri, (tmp_path / "art").as_uri())
    _update_both(fast_uri, client_uri, fast_ids, client_ids)
    _assert_same(fast_uri, client_uri, exp_ids, fast_ids, client_ids)
    before = table_rows(fast_uri, fast_ids)
    assert not update_run(fast_uri, fast_ids[0], params={"summary_param": 2}, status="FAILED")
    assert not update_run(fast_uri, "0" * 32, metrics=[("x", 1.0, 0, 0)])
    assert table_rows(fast_uri, fast_ids) == before


@pytest.mark.scaleout
def test_postgres_update_run_logs_and_closes_like_the_client(postgres_pair, tmp_path):
    fast_uri, client_uri = postgres_pair
    exp_ids, fast_ids, client_ids = _write_both(fast_uri, client_uri, (tmp_path / "art").as_uri())
    _update_both(fast_uri, client_uri, fast_ids, client_ids)
    _assert_same(fast_uri, client_uri, exp_ids, fast_ids, client_ids)


def _check_known_values(snap: dict) -> None:
    """Equal to the client is the test; these pin what that means, so a shared mistake shows."""
    runs = snap["runs"]
    assert len(runs) == 27 and [r["info"]["status"] for r in runs[1:4]] == ["FINISHED", "FAILED", "KILLED"]
    assert runs[1]["tags"]["mlflow.parentRunId"] == "<run 0>"
    assert runs[0]["info"]["run_name"] == runs[0]["tags"]["mlflow.runName"] == "sweep-λ"
    assert runs[1]["params"]["init"] == "[-1.5, 2.0]" and runs[2]["params"]["optimizer.momentum"] == "None"
    ties = runs[25]["metrics"]
    assert ties["tie_step"] == 3.0            # step 7 beats step 6; at step 7 the later timestamp; then value
    assert ties["tie_all"] == 4.0             # (3, T0, 4.0) beats (3, T0, -1.0)
    assert ties["nan_last"] == "nan"          # the largest step wins, NaN or not
    assert ties["nan_vs_zero"] == "nan" and ties["zero_vs_nan"] == 0.0  # NaN is stored as 0: first one wins
    assert ties["inf_ties"] == 1.7976931348623157e308 and ties["neg_inf"] == -1.7976931348623157e308
    assert ties["flag"] == 1.0 and ties["big_int"] == float(2 ** 53 + 1) and ties["tiny"] == 5e-324
    hist = snap["history"][25]
    assert sorted(str(v) for v, _, _ in hist["nan_vs_zero"]) == ["0.0", "nan"]  # the NaN duplicate dropped
    assert len(hist["tie_all"]) == 2 and len(hist["signed_zero"]) == 1 and len(hist["inf_ties"]) == 1
    assert hist["huge_step"] == [(1.0, T0, 2 ** 62)] and hist["np_int_step"] == [(0.5, T0, 3)]
    diverged = snap["history"][2]["loss"]
    assert [v for v, _, _ in diverged[-3:]] == [1.7976931348623157e308, "nan", -1.7976931348623157e308]
    named = runs[26]
    assert named["info"]["run_name"] == "named-by-tag" and named["info"]["user_id"] == "ada"
    assert len(named["params"]["long"]) == 6000  # MLflow keeps 6,000 characters of a param
    assert named["info"]["artifact_uri"].endswith("/<run 26>/artifacts")


# --- smaller properties ---

@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                          st.one_of(st.floats(allow_nan=True), st.integers(-3, 3)),
                          st.integers(0, 3), st.integers(-2, 2)), max_size=40))
@settings(max_examples=300, deadline=None)
def test_both_branches_give_the_same_rows_and_latest_values(points):
    """The C-level branch, where it applies, agrees with the point-by-point one."""
    keys, values, stamps, steps = zip(*points) if points else ((), (), (), ())
    plain = records._plain_rows("r", keys, values, stamps, steps) if points else None
    checked = records._checked_rows("r", points)
    if plain is not None:
        assert plain == checked
    floats_only = all(type(v) is float and math.isfinite(v) for v in values)
    distinct = len({(k, t, s, v) for k, v, t, s in points}) == len(points)
    assert (plain is not None) == (bool(points) and floats_only and distinct)


def test_runs_without_times_or_names_get_mlflows_defaults(sqlite_pair):
    import time

    from mlflow import MlflowClient

    uri = sqlite_pair[0]
    exp = MlflowClient(tracking_uri=uri).create_experiment("e")
    before = int(time.time() * 1000)
    (rid,) = write_runs(uri, [RunRecord(exp, metrics=[("m", 1.0, 5, 0)])])
    run = MlflowClient(tracking_uri=uri).get_run(rid)
    assert before <= run.info.start_time == run.info.end_time <= int(time.time() * 1000)
    assert run.info.run_name and run.data.tags["mlflow.runName"] == run.info.run_name  # MLflow's random name
    assert run.info.status == "FINISHED" and run.data.metrics == {"m": 1.0}


def test_one_bad_record_writes_nothing(sqlite_pair):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = sqlite_pair[0]
    exp = MlflowClient(tracking_uri=uri).create_experiment("e")
    good = [RunRecord(exp, run_name=f"r{i}", metrics=[("m", float(i), 0, 0)]) for i in range(3)]
    for bad, error in [(RunRecord(exp, metrics=[("bad/../name", 1.0, 0, 0)]), "Invalid value"),
                       (RunRecord(exp, metrics=[("m", "x", 0, 0)]), "Please specify value as a valid double"),
                       (RunRecord(exp, status="RUNNING"), "status must be one of"),
                       (RunRecord(exp, run_name="a", tags={"mlflow.runName": "b"}), "different values"),
                       (RunRecord("12345"), "No Experiment with id=12345")]:
        with pytest.raises(MlflowException, match=error):
            write_runs(uri, [*good, bad])
    dup = RunRecord(exp, run_name="dup")
    write_runs(uri, [dup])
    with pytest.raises(sqlite3.IntegrityError):
        write_runs(uri, [*good, RunRecord(exp, run_id=dup.run_id)])
    assert [r.info.run_name for r in MlflowClient(tracking_uri=uri).search_runs([exp])] == ["dup"]


def test_a_process_killed_mid_write_leaves_no_run(sqlite_pair, tmp_path):
    """kill -9 after the first chunk of rows reached the database file: none of the runs stay."""
    from mlflow import MlflowClient

    uri = sqlite_pair[0]
    exp = MlflowClient(tracking_uri=uri).create_experiment("e")
    script = textwrap.dedent(f"""
        import os, signal
        from gdexp.tracking.fast import write as bulk_store
        from gdexp.tracking.fast.records import RunRecord
        bulk_store._CHUNK_POINTS = 50
        flush, calls = bulk_store._flush, []
        def dying_flush(*args):
            flush(*args)
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        bulk_store._flush = dying_flush
        records = [RunRecord({exp!r}, run_name=f"r{{i}}", metrics=[("m", float(s), 0, s) for s in range(60)])
                   for i in range(5)]
        bulk_store.write_runs({uri!r}, records)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(records.__file__).parents[3])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert Path(uri[len("sqlite:///"):] + "-journal").exists()  # the transaction was open when it died
    assert MlflowClient(tracking_uri=uri).search_runs([exp]) == []
    with sqlite3.connect(uri[len("sqlite:///"):]) as conn:
        assert conn.execute("SELECT count(*) FROM metrics").fetchone() == (0,)


# --- the fence ---------------------------------------------------------------------------------

def test_the_fence_knows_mlflows_migration_head():
    # Fails when MLflow's schema moves on: test the fast path on the new revision, then move TESTED_REVISION.
    assert fence.mlflow_migration_head() == fence.TESTED_REVISION


def test_a_store_on_an_unknown_revision_is_refused_with_its_reason(sqlite_pair):
    uri = sqlite_pair[0]
    with sqlite3.connect(uri[len("sqlite:///"):]) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    ok, reason = fast_path_available(uri)
    assert not ok and "ffffffffffff" in reason and fence.TESTED_REVISION in reason and "\n" not in reason
    with pytest.raises(fence.FastPathUnavailable, match="ffffffffffff"):
        write_runs(uri, [RunRecord("0")])


def test_mlflow_on_another_head_is_refused(sqlite_pair, monkeypatch):
    monkeypatch.setattr(fence, "mlflow_migration_head", lambda: "0123456789ab")
    ok, reason = fast_path_available(sqlite_pair[0])
    assert not ok and "0123456789ab" in reason


@pytest.mark.parametrize("uri, why", [
    ("http://127.0.0.1:5000", "tracking server"),
    ("https://mlflow.example.com", "tracking server"),
    ("databricks", "tracking server"),
    ("databricks-uc", "tracking server"),
    ("/tmp/mlruns", "not a SQL store"),
    ("file:///tmp/mlruns", "not a SQL store"),
    ("mysql+pymysql://u@h/db", "sqlite:// and postgresql+psycopg2:// only"),
    ("postgresql+pg8000://u@h/db", "sqlite:// and postgresql+psycopg2:// only"),
    ("postgresql://u@h/db", "not postgresql://"),  # psycopg 3 in SQLAlchemy 2.1
    ("sqlite://", "in-memory"),
    ("sqlite:////nonexistent/folder/mlflow.db", "does not exist yet"),
])
def test_other_stores_are_refused(uri, why):
    ok, reason = fast_path_available(uri)
    assert not ok and why in reason


def test_workspaces_are_refused(sqlite_pair, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert fast_path_available(sqlite_pair[0]) == (False, "MLFLOW_ENABLE_WORKSPACES is on: workspace-scoped "
                                                          "stores are not tested")


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "x.db").write_bytes(b"")
    ok, reason = fast_path_available(f"sqlite:///{tmp_path / 'x.db'}")
    assert not ok and "cannot read the store's schema revision" in reason
