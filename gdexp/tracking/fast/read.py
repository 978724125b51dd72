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

import re

import numpy as np
import pandas as pd

from gdexp.core.errors import NotFound
from gdexp.results.table import MEASURED, SUMMARY_METRICS
from gdexp.tracking import TAG as _T
from gdexp.tracking.fast.fence import _engine

# The tags load_runs reads, under the column each goes to.
# Tags read into load_runs' columns, by column: both readers (this one and the client path,
# gdexp.tracking.reader) read them from this one map, so a new tag column cannot reach one only.
RUN_TAGS = {"sweep_id": "mlflow.parentRunId", "status": f"{_T}status", "diverged": f"{_T}diverged",
            "diverged_step": f"{_T}diverged_step", "divergence": f"{_T}divergence",
            "stop_reason": f"{_T}stop_reason", "pruned_step": f"{_T}pruned_step", "error": f"{_T}error", "config_hash": f"{_T}config_hash",
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
    loss, optimizer, lr (their params), status, diverged, the other tags of RUN_TAGS under
    their column names (raw strings; None where absent), SUMMARY_METRICS and MEASURED (float,
    NaN where absent or NaN), then every param the runs have under its key (NaN where a run
    has none). Rows in no particular order.

    Each table is read in one pass over the runs' rows (the `run_uuid` index), a chunk of
    rows at a time, straight into a runs x keys grid; equal strings are kept once.

    Args:
        uri: a store for which fence.fast_path_available(uri) is True.
        experiment: every active run of the experiment with this name, sweep parents left out;
        sweep: or the active children of this parent run (in the parent's experiment);
        neither: the children of the sweep parent started last (over active experiments).

    Raises:
        NotFound: no experiment by that name, no run with id `sweep`, no sweep in the store.
    """
    engine = _engine(uri)
    with engine.connect() as conn, conn.begin():  # one read transaction: one snapshot
        sql = _Sql(conn.connection.dbapi_connection.cursor(), engine.dialect.name)
        names = dict(sql.all("SELECT experiment_id, name FROM experiments"))
        if experiment is not None:
            found = sql.all("SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = :name",
                            name=experiment)
            if not found:
                raise NotFound("experiment", experiment, f"no experiment named {experiment!r} in {uri}")
            from types import SimpleNamespace

            from gdexp.tracking.store import check_not_deleted  # the client path's line, word for word

            check_not_deleted(SimpleNamespace(name=experiment, experiment_id=found[0][0], lifecycle_stage=found[0][1]),
                              uri, "experiment")
            where, binds = _EXPERIMENT_RUNS, {"exp": found[0][0]}
        else:
            parent, exp = _parent(sql, uri, sweep)
            where, binds = _SWEEP_RUNS, {"exp": exp, "parent": parent}
        runs = sql.all("SELECT run_uuid, name, experiment_id, status, start_time, artifact_uri FROM runs "
                       f"WHERE run_uuid IN ({where}) ORDER BY run_uuid", **binds)  # _grid's order
        frame = pd.DataFrame(runs, columns=["run_id", "run_name", "experiment", "mlflow_status", "start_time",
                                            "artifact_uri"])
        frame["experiment"] = frame["experiment"].map(names)
        tags = _grid(sql, "tags", "t.value", [*RUN_TAGS.values(), "mlflow.runName"], where, binds, len(runs), object)
        metrics = _grid(sql, "latest_metrics", "CASE WHEN t.is_nan THEN NULL ELSE t.value END",  # MLflow: NaN
                        [*SUMMARY_METRICS, *MEASURED], where, binds, len(runs), float)
        keys = [k for (k,) in sql.all(_PARAM_KEYS)]
        params = _grid(sql, "params", "t.value", keys, where, binds, len(runs), object)
    unnamed = frame["run_name"].isin(["", None])  # MLflow's run entity falls back on the tag
    frame["run_name"] = frame["run_name"].where(~unnamed, tags.pop("mlflow.runName"))
    tags = {column: tags[key] for column, key in RUN_TAGS.items()}
    finished = frame["mlflow_status"] == "FINISHED"
    absent = pd.Series(None, index=frame.index, dtype=object)
    named = {"loss": params.get("loss.name", absent), "optimizer": params.get("optimizer.name", absent),
             "lr": params.get("optimizer.lr", absent), **tags}
    fixed = {**{column: value.where(value.notna(), None) for column, value in named.items()},  # absent: None
             "status": tags["status"].where(finished, frame["mlflow_status"].str.lower()),
             "diverged": tags["diverged"] == "true", **metrics}
    params = {key: column for key, column in params.items()
              if key not in frame and key not in fixed and column.notna().any()}
    return pd.concat([frame, pd.DataFrame(fixed, index=frame.index), pd.DataFrame(params, index=frame.index)],
                     axis=1)


class _Sql:
    """Queries written with `:name` parameters on the connection's DBAPI cursor (sqlite3, psycopg2):
    rows as plain tuples, none of SQLAlchemy's per-row work."""

    def __init__(self, cursor, dialect: str):
        self.cursor, self.postgres = cursor, dialect == "postgresql"

    def execute(self, text: str, **binds):
        if self.postgres:  # psycopg2's named style
            text = re.sub(r":(\w+)", r"%(\1)s", text)
        self.cursor.execute(text, binds)
        return self.cursor

    def all(self, text: str, **binds) -> list[tuple]:
        return self.execute(text, **binds).fetchall()


def _parent(sql: _Sql, uri: str, sweep: str | None) -> tuple[str, int]:
    """(run id, experiment id) of the sweep's parent: `sweep`, else the sweep started last."""
    if sweep is not None:
        found = sql.all("SELECT experiment_id FROM runs WHERE run_uuid = :id", id=sweep)
        if not found:
            raise NotFound("sweep", sweep, f"no such run in {uri}")
        return sweep, found[0][0]
    found = sql.all(
        "SELECT r.run_uuid, r.experiment_id FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        f"WHERE e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active' AND r.run_uuid IN "
        f"(SELECT s.run_uuid FROM tags s WHERE s.key = '{_T}sweep' AND s.value = 'true') "
        "ORDER BY r.start_time DESC, r.run_uuid DESC LIMIT 1")
    if not found:
        raise NotFound("tracking.uri", uri, "no sweep in this store; run one with `gdexp -m ...`")
    return found[0][0], found[0][1]


_CHUNK_ROWS = 100_000  # rows fetched and placed at a time (bounds the memory of the raw rows)


def _grid(sql: _Sql, table: str, value: str, keys: list[str], where: str, binds: dict, runs: int,
          dtype) -> dict[str, pd.Series]:
    """key -> the values of `table` under that key, one per run (the `runs` runs `where` selects,
    in run id order), NaN where a run has none.

    One pass over the runs' rows of `table`, placed into a
    runs x keys array; equal strings share one object (a column of 100,000 runs
    holds its few distinct values once).
    """
    if not keys or not runs:
        return {key: pd.Series(np.nan, index=range(runs), dtype=dtype) for key in keys}
    columns = pd.Index(keys, dtype=object)
    grid = np.full((runs, len(columns)), np.nan, dtype=dtype)
    # The rows of the runs by the run_uuid index, each with its run's position (the runs
    # in run id order): no run id string per row. The keys are picked here: a key filter in SQL
    # makes SQLite probe the (key, run_uuid) primary key once per key and run, several times slower.
    cursor = sql.execute(
        f"SELECT w.n, t.key, {value} FROM (SELECT run_uuid, ROW_NUMBER() OVER (ORDER BY run_uuid) - 1 AS n "
        f"FROM runs WHERE run_uuid IN ({where})) w JOIN {table} t ON t.run_uuid = w.run_uuid", **binds)
    while chunk := cursor.fetchmany(_CHUNK_ROWS):
        part = pd.DataFrame(chunk, columns=["n", "key", "value"], dtype=object)
        at = columns.get_indexer(part["key"])
        wanted = at >= 0
        values = part["value"].to_numpy()[wanted]
        if dtype is object:  # equal strings kept once
            codes, uniques = pd.factorize(values, use_na_sentinel=False)
            values = np.asarray(uniques, dtype=object)[codes]
        grid[part["n"].to_numpy(np.int64)[wanted], at[wanted]] = values  # NULL: None, or NaN in a float grid
    return {key: pd.Series(grid[:, j]) for j, key in enumerate(keys)}
