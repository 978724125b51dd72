"""Runs read straight from MLflow's SQL tables into pandas, under the fast write path's fence.

`MlflowClient.search_runs` builds one entity per run, param, tag and metric
(100,000 runs of a sweep: 167 s and ~4.8 GB). `read_runs` asks MLflow's tables
in one read transaction and hands back the same raw rows as
gdexp.tracking.reader builds from MLflow's entities, as a pandas frame: the
runs search_runs would return (active runs of the experiment, or the children
of a sweep's parent), each param under its key, the tags and summary metrics
gdexp reads. Fenced like the write path (fence.fast_path_available): a tracking
server or a store of another schema revision is read through MLflow's client.
Neither mlflow nor its run entities are imported here.

What costs time at 100,000 runs is SQL's work and Python objects, one or more
per SQL row (2.8 million param rows). One query over the runs, in run id order,
reads everything (the runs are found once): a run's params, and its tags, come
back as one string each, its keys and values joined (group_concat /
string_agg), split in Arrow (no Python string per value); each metric
load_runs reads is a column, its float as stored (text would round it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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

# The runs search_runs returns (conditions on `runs r`): active ones of the experiment; for a
# sweep, its parent's children.
_EXPERIMENT_RUNS = ("r.experiment_id = :exp AND r.lifecycle_stage = 'active' "
                    f"AND r.run_uuid NOT IN (SELECT s.run_uuid FROM tags s WHERE s.key = '{_T}sweep' "
                    "AND s.value = 'true')")
_SWEEP_RUNS = ("r.experiment_id = :exp AND r.lifecycle_stage = 'active' "
               "AND r.run_uuid IN (SELECT s.run_uuid FROM tags s WHERE s.key = 'mlflow.parentRunId' "
               "AND s.value = :parent)")

# Between the counts, keys and values of a run in the one string SQL joins them into (_joined).
# A key or value holding it splits into one part too many, told by the counts (_spread).
_SEP = "\x1f"


def read_runs(uri: str, experiment: str | None = None, sweep: str | None = None) -> pd.DataFrame:
    """The runs load_runs reads, as raw rows: one per run, untyped (params as MLflow's strings).

    Columns: run_id, run_name, experiment, mlflow_status, start_time (ms), artifact_uri,
    loss, optimizer, lr (their params), status, diverged, the other tags of RUN_TAGS under
    their column names (raw strings; None where absent), SUMMARY_METRICS and MEASURED (float,
    NaN where absent or NaN), then every param the runs have under its key (NaN where a run
    has none). Rows in run id order (SQL's).

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
            found = sql.all("SELECT experiment_id, name, lifecycle_stage FROM experiments WHERE name = :name",
                            name=experiment)
            from gdexp.tracking.store import check_experiment_found  # the client path's lines, word for word

            check_experiment_found(ExperimentRow(str(found[0][0]), *found[0][1:]) if found else None, experiment, uri,
                                   "experiment")
            where, binds = _EXPERIMENT_RUNS, {"exp": found[0][0]}
        else:
            parent, exp = _parent(sql, uri, sweep)
            where, binds = _SWEEP_RUNS, {"exp": exp, "parent": parent}
        wanted = [*SUMMARY_METRICS, *MEASURED]
        stored = _stored_metrics(sql, wanted)
        # One column per metric some run has: one probe of the (key, run_uuid) primary key per run.
        metric = {f"m{j}": key for j, key in enumerate(stored)}
        probes = "".join(f", (SELECT CASE WHEN t.is_nan THEN NULL ELSE t.value END FROM latest_metrics t "  # MLflow: NaN
                         f"WHERE t.key = :{name} AND t.run_uuid = r.run_uuid)" for name in metric)
        tagged = {f"t{j}": key for j, key in enumerate([*RUN_TAGS.values(), "mlflow.runName"])}  # the tags read
        runs = sql.all(f"SELECT r.run_uuid, r.name, r.experiment_id, r.status, r.start_time, r.artifact_uri, "
                       f"{_joined(sql, 'params')}, {_joined(sql, 'tags', tagged)}{probes} FROM runs r WHERE {where} "
                       "ORDER BY r.run_uuid", sep=_SEP, **binds, **metric, **tagged)
        frame = pd.DataFrame([run[:6] for run in runs], columns=["run_id", "run_name", "experiment",
                                                                   "mlflow_status", "start_time", "artifact_uri"])
        columns = list(zip(*runs)) if runs else [()] * (8 + len(stored))
        del runs  # the joined strings go as soon as Arrow holds them (columns.pop)
        ids = columns[0]
        params = _spread(sql, "params", ids, columns.pop(6))
        tags = _spread(sql, "tags", ids, columns.pop(6), keep=list(tagged.values()))
    metrics = {key: pd.Series(np.array(columns[6 + stored.index(key)], dtype=float)) if key in stored  # NULL: NaN
               else pd.Series(np.nan, index=frame.index, dtype=float) for key in wanted}
    frame["experiment"] = frame["experiment"].map(names)
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


@dataclass(frozen=True)
class RunInfo:
    """The fields of MLflow's RunInfo (mlflow.entities.RunInfo) that gdexp reads, same names and
    types: ids as strings, times in ms since the epoch (end_time None while running)."""

    run_id: str
    run_name: str
    experiment_id: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str


@dataclass(frozen=True)
class RunData:
    """MLflow's RunData: params and tags as stored (strings), metrics at their latest value
    (latest_metrics: the value of the highest step, then timestamp; NaN where MLflow stored NaN)."""

    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class StoredRun:
    """A run as MlflowClient.get_run returns it (`run.info`, `run.data`), read by SQL:
    tests/tracking/test_fast_read.py compares both field by field."""

    info: RunInfo
    data: RunData


def read_run(uri: str, run_id: str) -> StoredRun | None:
    """The run `run_id` (deleted ones too, as get_run), or None where the store has none.

    Args:
        uri: a store for which fence.fast_path_available(uri) is True.
    """
    engine = _engine(uri)
    with engine.connect() as conn, conn.begin():  # one snapshot: the run with its rows
        sql = _Sql(conn.connection.dbapi_connection.cursor(), engine.dialect.name)
        found = sql.all("SELECT run_uuid, name, experiment_id, user_id, status, start_time, end_time, "
                        "artifact_uri, lifecycle_stage FROM runs WHERE run_uuid = :id", id=run_id)
        if not found:
            return None
        params = dict(sql.all("SELECT key, value FROM params WHERE run_uuid = :id", id=run_id))
        tags = dict(sql.all("SELECT key, value FROM tags WHERE run_uuid = :id", id=run_id))
        metrics = {key: float("nan") if is_nan else float(value) for key, value, is_nan in
                   sql.all("SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = :id", id=run_id)}
    uuid, name, experiment, user, status, start, end, artifacts, stage = found[0]
    info = RunInfo(uuid, name or tags.get("mlflow.runName"), str(experiment), user, status, start, end,
                   artifacts, stage)
    return StoredRun(info, RunData(params, tags, metrics))


class ExperimentRow(NamedTuple):
    """The fields of MLflow's Experiment that gdexp reads (id as a string, as MLflow's)."""

    experiment_id: str
    name: str
    lifecycle_stage: str


def read_experiments(uri: str) -> list[ExperimentRow]:
    """Every experiment of the store, deleted ones too."""
    engine = _engine(uri)
    with engine.connect() as conn:
        sql = _Sql(conn.connection.dbapi_connection.cursor(), engine.dialect.name)
        return [ExperimentRow(str(i), name, stage) for i, name, stage in
                sql.all("SELECT experiment_id, name, lifecycle_stage FROM experiments ORDER BY experiment_id")]


def latest_sweep_id(uri: str) -> str:
    """The run id of the sweep parent started last, over the active experiments (NotFound: none)."""
    engine = _engine(uri)
    with engine.connect() as conn:
        return _parent(_Sql(conn.connection.dbapi_connection.cursor(), engine.dialect.name), uri, None)[0]


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


def _stored_metrics(sql: _Sql, keys: list[str]) -> list[str]:
    """The metrics of `keys` that latest_metrics holds for any run (one index probe each)."""
    binds = {f"k{j}": key for j, key in enumerate(keys)}
    found = sql.all(" UNION ALL ".join(f"SELECT {j} WHERE EXISTS (SELECT 1 FROM latest_metrics t WHERE t.key = :{name})"
                                       for j, name in enumerate(binds)), **binds)
    return [keys[j] for j in sorted(j for (j,) in found)]


def _joined(sql: _Sql, table: str, keys: dict[str, str] | None = None) -> str:
    """A run's rows of `table` (the run `r`) as one string: how many rows, how many values not
    NULL, then each row's key and value, all joined by :sep (``2 2 key value key value``).
    Only the rows of the keys bound to the names of `keys` where given.

    Each key goes with its value (one aggregate of both), whatever order SQL joins the rows in."""
    pairs = "t.key || :sep || t.value"  # NULL where the value is: left out (told by the counts)
    joined = f"string_agg({pairs}, :sep)" if sql.postgres else f"group_concat({pairs}, :sep)"
    # `t.key || ''`: a plain `t.key IN (...)` makes SQLite probe the (key, run_uuid) primary key
    # once per key, several times slower than reading the run's few rows by the run_uuid index.
    only = f" AND t.key || '' IN ({', '.join(':' + name for name in keys)})" if keys else ""
    return (f"(SELECT count(*) || :sep || count(t.value) || coalesce(:sep || {joined}, '') FROM {table} t "
            f"WHERE t.run_uuid = r.run_uuid{only})")


def _spread(sql: _Sql, table: str, ids, joined, keep: list[str] | None = None) -> dict[str, pd.Series]:
    """key -> the values of `table` under that key, one per run (`ids`, in that order), NaN where
    a run has none; from each run's string of _joined. Only the keys in `keep` where given.

    The strings are split in Arrow (no Python string per value); runs with the same keys are
    placed together (a sweep's runs mostly have the same keys). A run whose string does not
    split into its count of keys and values (_SEP inside a key or value), or with a NULL value,
    is read row by row (_unclear).
    """
    runs = len(ids)
    parts = pc.split_pattern(pa.array(joined, type=pa.large_string()), _SEP)
    del joined
    offsets = parts.offsets.to_numpy()
    count, values = (pc.cast(pc.list_element(parts, i), pa.int64()).to_numpy() for i in (0, 1))
    clear = (values == count) & (np.diff(offsets) == 2 + 2 * count)
    patterns = pc.dictionary_encode(pc.binary_join(pc.list_slice(parts, 2, None, 2),
                                                   pa.scalar(_SEP, pa.large_string())))
    codes = np.where(clear & (count > 0), patterns.indices.to_numpy(zero_copy_only=False), -1)
    blocks = [(at, patterns.dictionary[j].as_py().split(_SEP))  # runs with the same keys
              for j, at in _groups(codes, len(patterns.dictionary))]
    unclear = np.flatnonzero(~clear)
    rows = _unclear(sql, table, [ids[i] for i in unclear]) if len(unclear) else []
    if keep is None:  # every key, in the order met
        keep = list(dict.fromkeys([*(k for _, names in blocks for k in names), *(k for _, k, _ in rows)]))
    columns = pd.Index(keep, dtype=object)
    where = np.full((len(keep), runs), -1, dtype=np.int64)  # each run's value: its place in parts.values
    for at, names in blocks:
        for i, c in enumerate(columns.get_indexer(names)):
            if c >= 0:
                where[c, at] = offsets[at] + 3 + 2 * i
    late: dict[int, list] = {}  # the values read row by row, by column
    if rows:
        position = {run: i for i, run in enumerate(ids)}
        for (run, key, value), c in zip(rows, columns.get_indexer([k for _, k, _ in rows])):
            if c >= 0:
                late.setdefault(c, []).append((position[run], value))
    text = _text_dtype()
    return {key: _column(parts.values, where[c], late.get(c), text) for c, key in enumerate(keep)}


def _groups(codes: np.ndarray, count: int) -> list[tuple[int, np.ndarray]]:
    """(code, the positions holding it) for each code 0 .. count-1 that `codes` holds."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(count + 1))
    return [(j, order[bounds[j]:bounds[j + 1]]) for j in range(count) if bounds[j] < bounds[j + 1]]


def _text_dtype():
    """The dtype pandas gives a column of strings (str, Arrow's strings, from pandas 3 on);
    None where that is not Arrow's (pandas 2: object)."""
    dtype = pd.Series(np.array([""], dtype=object)).dtype
    return dtype if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow" else None


def _column(values: pa.Array, where: np.ndarray, late: list | None, text) -> pd.Series:
    """The column of the values at `where` (-1: none, NaN), then the (position, value) pairs of
    `late`: what pandas makes of the same values as Python objects, without making them where
    it keeps them in Arrow (`text`)."""
    present = where >= 0
    if late is None and text is not None and present.any():
        return pd.Series(pd.array(values.take(pa.array(where, mask=~present)), dtype=text))
    column = np.full(len(where), np.nan, dtype=object)
    column[present] = values.take(pa.array(where[present])).to_numpy(zero_copy_only=False)
    for i, value in late or ():
        column[i] = value
    return pd.Series(column)


def _unclear(sql: _Sql, table: str, ids: list[str]) -> list[tuple]:
    """(run id, key, value) of every row of `table` of these runs."""
    rows = []
    for i in range(0, len(ids), 500):  # under SQLite's bound on parameters
        part = {f"r{j}": run for j, run in enumerate(ids[i:i + 500])}
        rows += sql.all(f"SELECT t.run_uuid, t.key, t.value FROM {table} t WHERE t.run_uuid IN "
                        f"({', '.join(':' + name for name in part)})", **part)
    return rows


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
