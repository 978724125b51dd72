"""Runs read straight from MLflow's SQL tables into pandas, under the fast write path's fence.

`MlflowClient.search_runs` builds one entity per run, param, tag and metric
(100,000 runs of a sweep: 167 s and ~4.8 GB). `read_runs` asks the same tables
one key at a time (`SELECT run_uuid, value FROM params WHERE key = ...`, the
primary key's order) and hands back the same raw rows as
gdexp.tracking.reader builds from MLflow's entities, as a pandas frame: the
runs search_runs would return (active runs of the experiment, or the children
of a sweep's parent), each param under its key, the tags and summary metrics
gdexp reads. Fenced like the write path (fence.fast_path_available): a tracking
server or a store of another schema revision is read through MLflow's client.
Neither mlflow nor its run entities are imported here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from gdexp.core.errors import NotFound
from gdexp.results.table import MEASURED, SUMMARY_METRICS
from gdexp.tracking import TAG as _T
from gdexp.tracking.fast.fence import _engine

# The tags load_runs reads, under the column each goes to.
RUN_TAGS = {"sweep_id": "mlflow.parentRunId", "status": f"{_T}status", "diverged": f"{_T}diverged",
            "diverged_step": f"{_T}diverged_step", "divergence": f"{_T}divergence",
            "stop_reason": f"{_T}stop_reason", "error": f"{_T}error", "config_hash": f"{_T}config_hash",
            "data_sha256": f"{_T}data_sha256", "source_sha256": f"{_T}source_sha256",
            "version": f"{_T}version"}

# The runs search_runs returns: active ones of the experiment; for a sweep, its parent's children.
_EXPERIMENT_RUNS = ("SELECT r.run_uuid FROM runs r WHERE r.experiment_id = :exp AND r.lifecycle_stage = 'active' "
                    f"AND r.run_uuid NOT IN (SELECT s.run_uuid FROM tags s WHERE s.key = '{_T}sweep' "
                    "AND s.value = 'true')")
_SWEEP_RUNS = ("SELECT r.run_uuid FROM runs r WHERE r.experiment_id = :exp AND r.lifecycle_stage = 'active' "
               "AND r.run_uuid IN (SELECT s.run_uuid FROM tags s WHERE s.key = 'mlflow.parentRunId' "
               "AND s.value = :parent)")

# Every distinct param key, one index probe each (a loose index scan: works on SQLite and PostgreSQL).
_PARAM_KEYS = ("WITH RECURSIVE k(key) AS (SELECT MIN(key) FROM params UNION ALL "
               "SELECT (SELECT MIN(p.key) FROM params p WHERE p.key > k.key) FROM k WHERE k.key IS NOT NULL) "
               "SELECT key FROM k WHERE key IS NOT NULL")


def read_runs(uri: str, experiment: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """The runs load_runs reads, as raw rows: one per run, untyped (params as MLflow's strings).

    Columns: run_id, run_name, experiment, mlflow_status, start_time (ms), artifact_uri,
    the tags of RUN_TAGS under their column names (raw strings; None where absent),
    SUMMARY_METRICS and MEASURED (float, NaN where absent or NaN), then every param
    the runs have under its key. Rows in no particular order.

    Args:
        uri: a store for which fence.fast_path_available(uri) is True.
        experiment: every active run of the experiment with this name, sweep parents left out;
        sweep: or the active children of this parent run (in the parent's experiment);
        neither: the children of the sweep parent started last (over active experiments).

    Raises:
        NotFound: no experiment by that name, no run with id `sweep`, no sweep in the store.
    """
    import sqlalchemy as sa

    with _engine(uri).connect() as conn, conn.begin():  # one read transaction: one snapshot
        names = dict(conn.execute(sa.text("SELECT experiment_id, name FROM experiments")).all())
        if experiment is not None:
            exp = conn.execute(sa.text("SELECT experiment_id FROM experiments WHERE name = :name"),
                               {"name": experiment}).scalar()
            if exp is None:
                raise NotFound("experiment", experiment, f"no experiment named {experiment!r} in {uri}")
            where, binds = _EXPERIMENT_RUNS, {"exp": exp}
        else:
            parent, exp = _parent(conn, uri, sweep)
            where, binds = _SWEEP_RUNS, {"exp": exp, "parent": parent}
        runs = conn.execute(sa.text(
            "SELECT run_uuid, name, experiment_id, status, start_time, artifact_uri FROM runs "
            f"WHERE run_uuid IN ({where})"), binds).all()
        ids = pd.Index([r[0] for r in runs], dtype=object)
        frame = pd.DataFrame(runs, columns=["run_id", "run_name", "experiment", "mlflow_status", "start_time",
                                            "artifact_uri"], index=ids)
        frame["experiment"] = frame["experiment"].map(names)
        tags = {column: _column(conn, "tags", key, where, binds, ids) for column, key in RUN_TAGS.items()}
        if frame["run_name"].isin(["", None]).any():  # MLflow's entity falls back on the tag
            frame["run_name"] = frame["run_name"].where(~frame["run_name"].isin(["", None]),
                                                        _column(conn, "tags", "mlflow.runName", where, binds, ids))
        value = "CASE WHEN t.is_nan THEN NULL ELSE t.value END"  # MLflow's entity: NaN
        metrics = {key: _column(conn, "latest_metrics", key, where, binds, ids, value).astype(float)
                   for key in (*SUMMARY_METRICS, *MEASURED)}
        params = {key: _column(conn, "params", key, where, binds, ids) for (key,) in conn.execute(sa.text(_PARAM_KEYS))}
    params = {key: column for key, column in params.items() if column.notna().any()}
    finished = frame["mlflow_status"] == "FINISHED"
    absent = pd.Series(None, index=ids, dtype=object)
    named = {"loss": params.get("loss.name", absent), "optimizer": params.get("optimizer.name", absent),
             "lr": params.get("optimizer.lr", absent), **tags}
    fixed = {**{column: value.where(value.notna(), None) for column, value in named.items()},  # absent: None
             "status": tags["status"].where(finished, frame["mlflow_status"].str.lower()),
             "diverged": tags["diverged"] == "true", **metrics}
    params = {key: column for key, column in params.items() if key not in frame and key not in fixed}
    return pd.concat([frame, pd.DataFrame(fixed, index=ids), pd.DataFrame(params, index=ids)],
                     axis=1).reset_index(drop=True)


def _parent(conn, uri: str, sweep: str | None) -> tuple[str, int]:
    """(run id, experiment id) of the sweep's parent: `sweep`, else the sweep started last."""
    import sqlalchemy as sa

    if sweep is not None:
        exp = conn.execute(sa.text("SELECT experiment_id FROM runs WHERE run_uuid = :id"), {"id": sweep}).scalar()
        if exp is None:
            raise NotFound("sweep", sweep, f"no such run in {uri}")
        return sweep, exp
    found = conn.execute(sa.text(
        "SELECT r.run_uuid, r.experiment_id FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        f"WHERE e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active' AND r.run_uuid IN "
        f"(SELECT s.run_uuid FROM tags s WHERE s.key = '{_T}sweep' AND s.value = 'true') "
        "ORDER BY r.start_time DESC, r.run_uuid DESC LIMIT 1")).first()
    if found is None:
        raise NotFound("tracking.uri", uri, "no sweep in this store; run one with `gdexp -m ...`")
    return found[0], found[1]


def _column(conn, table: str, key: str, where: str, binds: dict, ids: pd.Index,
            value: str = "t.value") -> pd.Series:
    """One key of `table` for the runs `where` selects, aligned on `ids` (missing: NaN).

    Equal values share one string object (a column of 100,000 runs holds its few
    distinct values once, not 100,000 copies).
    """
    import sqlalchemy as sa

    rows = conn.execute(sa.text(f"SELECT t.run_uuid, {value} FROM {table} t "
                                f"WHERE t.key = :key AND t.run_uuid IN ({where})"), {"key": key, **binds}).all()
    if not rows:
        return pd.Series(np.nan, index=ids, dtype=object)
    run_ids, values = zip(*rows)
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    shared = np.append(np.asarray(uniques, dtype=object), None)[codes]  # code -1 (NULL): the None appended
    return pd.Series(shared, index=pd.Index(run_ids, dtype=object)).reindex(ids)
