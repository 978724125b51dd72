"""A fast write path for finished runs into MLflow's own SQL tables, fenced by schema revision.

`MlflowClient.log_batch` spends 45-150 us a metric point in SQLAlchemy ORM work
(one mapped object per point, the session's cascade walk, the flush, a
read-modify-write of `latest_metrics`). `write_runs` inserts the same rows that
MLflow's `SqlAlchemyStore` would write for

    create_run(experiment_id, start_time, tags, run_name)
    log_batch(run_id, metrics, params)
    set_terminated(run_id, status, end_time)

with one executemany per table (COPY for the metric points on PostgreSQL), in
one transaction for any number of runs. What MLflow's client then reads back
(`get_run`, `get_metric_history`, `search_runs`, the UI's sampled charts) is the
same as for runs written through the client: tests/test_bulk_store.py writes
the same runs both ways on SQLite and PostgreSQL and compares everything.

It writes below MLflow's public API, so it is fenced (`fast_path_available`):
only SQLite and PostgreSQL stores (postgresql+psycopg2://), never a tracking server, and only
when both the database's alembic revision and MLflow's own migration head are
the revision it was tested with (`TESTED_REVISION`). Anything else goes through
`write_runs_via_client`, the same records through MlflowClient.

Crash safety: `write_runs` is one database transaction. A process killed at any
point (kill -9 included) leaves either every run of the call or none of them:
SQLite rolls the journal back on next open, PostgreSQL discards an uncommitted
transaction. No run is ever left half-written or RUNNING by this path. Validation
errors (a bad metric name, an unknown experiment) also roll everything back.

mlflow and sqlalchemy are imported inside the functions: importing this module
costs nothing.
"""
# Kept whole (over ~300 lines): one fence (TESTED_REVISION) guards every statement below MLflow's API.
from __future__ import annotations

import math
import os
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

TESTED_REVISION = "dc11669786a5"     # MLflow 3.17's migration head, where this path was tested
TESTED_MLFLOW = "3.17"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
TERMINAL = ("FINISHED", "FAILED", "KILLED")
_DRIVERS = ("sqlite", "postgresql+psycopg2")  # plain postgresql:// is psycopg 3 in SQLAlchemy 2.1: untested
_SERVER_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc", "file", "")
_CHUNK_POINTS = 200_000  # metric rows prepared and sent per executemany / COPY (bounds memory)
_SQLITE_CACHE_KIB = 256 * 1024  # page cache of the writing connection while it writes
_INF = 1.7976931348623157e308  # what MLflow stores for +/-inf (SQL has no infinity)


class FastPathUnavailable(RuntimeError):
    """The store is not one the fast path was tested on; the message says why in one line."""


@dataclass
class RunRecord:
    """One finished run, as `write_runs` / `write_runs_via_client` write it.

    Attributes:
        experiment_id: the experiment (must exist and be active).
        run_name: None takes the `mlflow.runName` tag, else a random name, as MLflow does.
        tags: run tags, e.g. `mlflow.parentRunId` for a child run; set when the run is created.
        params: param key -> value; values are stringified with str() like MlflowClient does.
        metrics: (key, value, timestamp_ms, step) points, in logging order (order matters
            only for MLflow's latest-value rule on exact ties, see `write_runs`).
        status: "FINISHED", "FAILED" or "KILLED".
        start_time, end_time: ms since the epoch; None (or 0) means now, like MlflowClient.
        run_id: 32 hex digits, made here so that a caller knows the run's id (and its
            artifact URI, `artifact_uri`) before writing. The client path cannot choose
            ids: there MLflow makes new ones (returned by `write_runs_via_client`).
    """

    experiment_id: str
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    status: str = "FINISHED"
    start_time: int | None = None
    end_time: int | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


# --- the fence -------------------------------------------------------------------------------

def fast_path_available(uri: str) -> tuple[bool, str]:
    """Whether `write_runs` may write to the store at `uri`, and a one-line reason.

    True only for an existing SQLite file or a PostgreSQL database reached with
    psycopg2 (postgresql+psycopg2://; plain postgresql:// means psycopg 3 in
    SQLAlchemy 2.1, not tested) whose `alembic_version` is TESTED_REVISION, with MLflow's installed
    migrations also ending at TESTED_REVISION (read from mlflow's migration
    scripts, without importing mlflow). Never for a tracking server (http(s)://,
    databricks): there runs go through MLflow's REST API. The store must exist
    already (MlflowClient creates and migrates it on first use).

    >>> fast_path_available("http://127.0.0.1:5000")[0]
    False
    """
    scheme = _scheme(uri)
    if scheme in _SERVER_SCHEMES:
        where = "a tracking server" if scheme not in ("file", "") else "not a SQL store"
        return False, f"{uri} is {where}: runs go through MLflow's API"
    if scheme not in _DRIVERS:
        return False, f"the fast path is tested on sqlite:// and postgresql+psycopg2:// only, not {scheme}://"
    if _env_true("MLFLOW_ENABLE_WORKSPACES"):
        return False, "MLFLOW_ENABLE_WORKSPACES is on: workspace-scoped stores are not tested"
    if scheme == "sqlite":
        path = _sqlite_path(uri)
        if path is None:
            return False, "an in-memory SQLite store is one database per connection"
        if not Path(path).is_file():
            return False, f"{path} does not exist yet (MLflow creates the store on first use)"
    try:
        head = mlflow_migration_head()
    except (OSError, ValueError) as exc:
        return False, f"cannot read MLflow's migration head: {exc}"
    if head != TESTED_REVISION:
        return False, (f"installed MLflow's schema head is {head}, the fast path was tested on "
                       f"{TESTED_REVISION} (MLflow {TESTED_MLFLOW})")
    try:
        found = store_revision(uri)
    except Exception as exc:  # any driver error: not a store we can vouch for
        return False, f"cannot read the store's schema revision: {type(exc).__name__}: {_first_line(exc)}"
    if found != TESTED_REVISION:
        return False, f"the store's schema revision is {found}, the fast path was tested on {TESTED_REVISION}"
    return True, f"schema {TESTED_REVISION} (MLflow {TESTED_MLFLOW}), the revision the fast path was tested on"


@lru_cache(maxsize=None)
def mlflow_migration_head() -> str:
    """The head revision of the installed MLflow's alembic migrations, read from the scripts.

    Parses `revision = "..."` / `down_revision = ...` in mlflow/store/db_migrations/versions
    (the same files alembic reads) so that mlflow itself is not imported.

    Raises:
        ValueError: the scripts do not form a single head.
    """
    from importlib.util import find_spec

    spec = find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("mlflow is not installed")
    versions = Path(list(spec.submodule_search_locations)[0]) / "store" / "db_migrations" / "versions"
    revisions, parents = set(), set()
    for script in versions.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        rev = re.search(r'^revision\s*(?::[^=]*)?=\s*["\']([0-9a-zA-Z_]+)["\']', text, re.M)
        down = re.search(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", text, re.M)
        if rev is None or down is None:
            continue
        revisions.add(rev.group(1))
        parents.update(re.findall(r'["\']([0-9a-zA-Z_]+)["\']', down.group(1)))
    heads = revisions - parents
    if len(heads) != 1:
        raise ValueError(f"{len(heads)} heads in {versions}: {sorted(heads)}")
    return heads.pop()


def store_revision(uri: str) -> str | None:
    """The alembic revision recorded in the store's `alembic_version` table."""
    import sqlalchemy as sa

    with _engine(uri).connect() as conn:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


# --- the fast path ---------------------------------------------------------------------------

def write_runs(uri: str, records: list[RunRecord]) -> list[str]:
    """Insert finished runs into MLflow's tables in one transaction; returns their run ids.

    For each record, writes what MLflow 3.17's SqlAlchemyStore writes for
    create_run(experiment_id, start_time, tags, run_name) + log_batch(metrics,
    params) + set_terminated(status, end_time):
      - `runs`: artifact_uri = <experiment artifact_location>/<run_id>/artifacts
        (MLflow's append_to_uri_path), user_id = the `mlflow.user` tag or "unknown",
        source_type "UNKNOWN", empty source_name/entry_point_name/source_version,
        lifecycle_stage "active"; the `mlflow.runName` tag added unless given;
      - `tags`, `params` validated by MLflow's own validators (names; params cut to
        6,000 and tags to 8,000 characters with MLflow's warning);
      - `metrics`: NaN stored as value 0 with is_nan true, +/-inf as +/-1.797e308;
        a point equal to an earlier one of the same run (key, timestamp, step,
        stored value, is_nan) is dropped, as MLflow drops it;
      - `latest_metrics`: per key the point with the largest (step, timestamp,
        stored value); on an exact tie the first logged wins (MLflow's strict
        comparison in `_update_latest_metrics_if_necessary`).

    One transaction for all records: a kill -9 at any point leaves all of them or
    none (never a half-written or RUNNING run). Only new runs: a run id already in
    the store makes the whole call fail and roll back. On SQLite the file's write
    lock is held for the whole call (about 7 us a point on a 2-core machine):
    other writers wait up to their busy timeout (MLflow's: 20 s), so where other
    processes write to the same file, write a few hundred runs per call.

    Args:
        uri: a store for which `fast_path_available(uri)` is True.
        records: the runs; a child's `mlflow.parentRunId` tag may name any run id.

    Returns:
        The run ids, in the order of `records`.

    Raises:
        FastPathUnavailable: the fence said no (its reason is the message).
        mlflow.exceptions.MlflowException: an invalid name, value, status, run id,
            or a missing / deleted experiment (MLflow's own messages).
        sqlalchemy.exc.IntegrityError: a run id that exists already.
    """
    ok, reason = fast_path_available(uri)
    if not ok:
        raise FastPathUnavailable(reason)
    if not records:
        return []
    engine = _engine(uri)
    with engine.connect() as conn:
        locations = _experiment_locations(conn, {r.experiment_id for r in records})
        conn.commit()  # end the read: SQLite's write lock is then taken by the first INSERT
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # What MLflow's sessions set (foreign keys enforced, 20 s waiting for another
            # writer), and a page cache that holds the three metrics indexes being updated.
            cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
            conn.exec_driver_sql("PRAGMA foreign_keys = ON")
            conn.exec_driver_sql("PRAGMA busy_timeout = 20000")
            conn.exec_driver_sql(f"PRAGMA cache_size = {-_SQLITE_CACHE_KIB}")
            conn.commit()
        try:
            with conn.begin():
                _insert(conn, records, locations)
        finally:
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA cache_size = {int(cache)}")
                conn.commit()
    return [r.run_id for r in records]


def _insert(conn, records: list[RunRecord], locations: dict[str, str]) -> None:
    """Prepare and insert the records chunk by chunk, so memory stays bounded by the chunk."""
    runs, tags, params, latest, points = [], [], [], [], []
    for record in records:
        run, run_tags, run_params, run_latest, run_points = _prepare(record, locations[str(record.experiment_id)])
        runs.append(run)
        tags += run_tags
        params += run_params
        latest += run_latest
        points += run_points
        if len(points) >= _CHUNK_POINTS:
            _flush(conn, runs, tags, params, latest, points)
            runs, tags, params, latest, points = [], [], [], [], []
    _flush(conn, runs, tags, params, latest, points)


def artifact_uri(artifact_location: str, run_id: str) -> str:
    """The run's artifact URI, computed as MLflow's create_run does.

    >>> artifact_uri("file:///data/mlartifacts/gdexp", "abc")
    'file:///data/mlartifacts/gdexp/abc/artifacts'
    """
    from mlflow.utils.uri import append_to_uri_path

    return append_to_uri_path(artifact_location, run_id, "artifacts")


def _prepare(record: RunRecord, location: str):
    """The rows of one run: (runs row, tag rows, param rows, latest rows, metric rows)."""
    from mlflow.entities import RunStatus
    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException
    from mlflow.utils.name_utils import _generate_random_name
    from mlflow.utils.time import get_current_time_millis
    from mlflow.utils.validation import _validate_run_id

    run_id = record.run_id
    _validate_run_id(run_id)
    if record.status not in TERMINAL:
        RunStatus.from_string(record.status)  # MLflow's error for a name it does not know
        raise MlflowException(f"status must be one of {TERMINAL}, got {record.status!r}",
                              INVALID_PARAMETER_VALUE)
    tags = checked_tags(record.tags)
    name_tag = tags.get(RUN_NAME_TAG)
    if record.run_name and name_tag and record.run_name != name_tag:
        raise MlflowException(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
            f"different values (run_name='{record.run_name}', mlflow.runName='{name_tag}').",
            INVALID_PARAMETER_VALUE)
    name = record.run_name or name_tag or _generate_random_name()
    if not name_tag:
        tags[RUN_NAME_TAG] = name
    now = get_current_time_millis()
    run = {"run_uuid": run_id, "name": name, "source_type": "UNKNOWN", "source_name": "",
           "entry_point_name": "", "user_id": record.tags.get(USER_TAG, "unknown"),
           "status": record.status, "start_time": record.start_time or now,
           "end_time": record.end_time or now, "deleted_time": None, "source_version": "",
           "lifecycle_stage": "active", "artifact_uri": artifact_uri(location, run_id),
           "experiment_id": int(record.experiment_id)}
    tag_rows = [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()]
    param_rows = [{"key": k, "value": v, "run_uuid": run_id} for k, v in checked_params(record.params).items()]
    points, latest = _metric_rows(run_id, record.metrics)
    latest_rows = [{"key": k, "value": v, "timestamp": ts, "step": step, "is_nan": nan, "run_uuid": run_id}
                   for k, (step, ts, v, nan) in latest.items()]
    return run, tag_rows, param_rows, latest_rows, points


def _metric_rows(run_id: str, metrics) -> tuple[list[tuple], dict]:
    """Metric rows (key, value, timestamp, run_uuid, step, is_nan) and the latest point per key.

    The hot path (1.5 M points a sweep). A run whose points are all finite floats
    with int timestamps and steps and no repeated point (gdexp's runs) is handled
    by C-level passes (`_plain_rows`); any other goes point by point
    (`_checked_rows`). MLflow's own validators run on each new key and on any point
    that fails a cheap check, so the errors are MLflow's.
    """
    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

    metrics = list(metrics)
    if not metrics:
        return [], {}
    if set(map(len, metrics)) != {4}:
        raise MlflowException("a metric point is (key, value, timestamp, step)", INVALID_PARAMETER_VALUE)
    keys, values, stamps, steps = zip(*metrics)
    for key in set(keys) - _GOOD_KEYS:
        _check_key(key)
        _GOOD_KEYS.add(key)
    return _plain_rows(run_id, keys, values, stamps, steps) or _checked_rows(run_id, metrics)


_GOOD_KEYS: set = set()  # metric keys MLflow's validator accepted (a pure function of the key)


def _plain_rows(run_id: str, keys, values, stamps, steps) -> tuple[list[tuple], dict] | None:
    """The common case in C-level passes; None when some point needs `_checked_rows`."""
    from itertools import groupby, repeat
    from operator import itemgetter

    n = len(keys)
    if not (set(map(type, values)) == {float} and set(map(type, stamps)) == {int}
            and set(map(type, steps)) == {int} and min(stamps) >= 0
            and all(map(math.isfinite, values))
            and len(set(zip(keys, stamps, steps, values))) == n):
        return None
    rows = list(zip(keys, values, stamps, repeat(run_id, n), steps, repeat(False, n)))
    latest: dict[str, tuple] = {}
    # max() keeps the first of equal maxima: MLflow's strict "newer than" comparison.
    for key, group in groupby(zip(keys, steps, stamps, values), key=itemgetter(0)):
        best = max(map(itemgetter(1, 2, 3), group))
        if key not in latest or best > latest[key][:3]:
            latest[key] = (*best, False)
    return rows, latest


def _checked_rows(run_id: str, metrics: list) -> tuple[list[tuple], dict]:
    """Point by point: conversions, NaN as 0 with is_nan, +/-inf as +/-1.797e308, repeats dropped."""
    rows: list[tuple] = []
    seen: set = set()
    latest: dict[str, tuple] = {}  # key -> (step, timestamp, stored value, is_nan)
    isnan, isinf = math.isnan, math.isinf
    for point in metrics:
        key, value, ts, step = point
        if type(value) is not float:
            value = _as_float(value, point)
        if type(ts) is not int or type(step) is not int or ts < 0:
            ts, step = _as_ints(point, value)
        if isnan(value):
            value, nan = 0.0, True
        else:
            nan = False
            if isinf(value):
                value = _INF if value > 0 else -_INF
        ident = (key, ts, step, value, nan)
        if ident in seen:
            continue
        seen.add(ident)
        rows.append((key, value, ts, run_id, step, nan))
        best = latest.get(key)
        if best is None or (step, ts, value) > best[:3]:
            latest[key] = (step, ts, value, nan)
    return rows, latest


def _as_float(value, point) -> float:
    """A metric value as MlflowClient.log_batch converts it (numpy scalars, ints, bools)."""
    from mlflow.tracking.metric_value_conversion_utils import convert_metric_value_to_float_if_possible
    from mlflow.utils.validation import _validate_metric

    converted = convert_metric_value_to_float_if_possible(value)
    if type(converted) is not float:
        _validate_metric(point[0], converted, point[2], point[3])  # raises MLflow's error
        converted = float(converted)
    return converted


def _check_key(key) -> None:
    from mlflow.utils.validation import _validate_metric

    _validate_metric(key, 0.0, 0, 0)  # the name and its length; the rest is checked per point


def _as_ints(point, value) -> tuple[int, int]:
    """Timestamp and step as Python ints (numpy integers accepted), MLflow's error otherwise."""
    import operator

    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException
    from mlflow.utils.validation import _validate_metric

    key, _, ts, step = point
    _validate_metric(key, value, ts, step)
    try:
        return operator.index(ts), operator.index(step)
    except TypeError:
        raise MlflowException(f"metric {key!r}: timestamp and step must be integers, got "
                              f"timestamp={ts!r}, step={step!r}", INVALID_PARAMETER_VALUE) from None


def checked_tags(tags: dict) -> dict[str, str]:
    """Tags through MLflow's tag validator (name rules, values cut to 8,000 characters)."""
    from mlflow.utils.validation import _validate_tag

    out = {}
    for idx, (key, value) in enumerate(tags.items()):
        tag = _validate_tag(key, value, path=f"tags[{idx}]")
        out[tag.key] = tag.value
    return out


def checked_params(params: dict) -> dict[str, str]:
    """Params stringified (MlflowClient.log_batch: str(value)) and validated (cut to 6,000)."""
    from mlflow.utils.validation import _validate_param

    out = {}
    for idx, (key, value) in enumerate(params.items()):
        param = _validate_param(key, str(value), path=f"params[{idx}]")
        out[param.key] = param.value
    return out


def _experiment_locations(conn, experiment_ids) -> dict[str, str]:
    """experiment_id -> artifact_location; MLflow's errors for a missing or deleted experiment."""
    import sqlalchemy as sa
    from mlflow.exceptions import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, MlflowException

    wanted = {str(e): int(e) for e in experiment_ids}
    rows = conn.execute(sa.text("SELECT experiment_id, artifact_location, lifecycle_stage FROM experiments "
                                "WHERE experiment_id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
                        {"ids": sorted(set(wanted.values()))}).all()
    found = {row[0]: row for row in rows}
    out = {}
    for key, exp_id in wanted.items():
        row = found.get(exp_id)
        if row is None:
            raise MlflowException(f"No Experiment with id={exp_id} exists", RESOURCE_DOES_NOT_EXIST)
        if row[2] != "active":
            raise MlflowException(f"The experiment {exp_id} must be in the 'active' state. "
                                  f"Current state is {row[2]}.", INVALID_PARAMETER_VALUE)
        out[key] = row[1]
    return out


def _flush(conn, runs, tags, params, latest, points) -> None:
    """Insert one chunk: runs first (the other tables' foreign keys point at them)."""
    import sqlalchemy as sa

    t = _tables()
    for table, rows in ((t["runs"], runs), (t["tags"], tags), (t["params"], params),
                        (t["latest_metrics"], latest)):
        if rows:
            conn.execute(sa.insert(table), rows)
    if not points:
        return
    if conn.dialect.name == "postgresql":  # psycopg2: the fence lets no other driver through
        _copy_points(conn, points)
    else:  # sqlite3's executemany straight from the tuples: no per-row SQLAlchemy work
        conn.exec_driver_sql(_SQLITE_POINTS, points)


_POINT_COLUMNS = ", ".join(f'"{c}"' for c in ("key", "value", "timestamp", "run_uuid", "step", "is_nan"))
_SQLITE_POINTS = f"INSERT INTO metrics ({_POINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"


def _copy_points(conn, points) -> None:
    """COPY the metric rows in text format, in the connection's open transaction.

    Values are Python float reprs (finite by now), which PostgreSQL's float8 input
    parses to the same double. Except -0.0: psycopg2 sends it as the SQL expression
    ` -0.0` (minus applied to a numeric zero), so MLflow's store holds 0.0; COPY
    would keep the sign. Keys and run ids are escaped: MLflow's name rule ends in
    `$`, which lets a trailing newline through.
    """
    import io

    keys = {k: _copy_escape(k) for k in {p[0] for p in points}}
    runs = {r: _copy_escape(r) for r in {p[3] for p in points}}
    buf = io.StringIO()
    buf.writelines(f"{keys[k]}\t{repr(v) if v else '0.0'}\t{ts}\t{runs[run]}\t{step}\t{'t' if nan else 'f'}\n"
                   for k, v, ts, run, step, nan in points)
    buf.seek(0)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY metrics ({_POINT_COLUMNS}) FROM STDIN", buf)
    finally:
        cursor.close()


def _copy_escape(text: str) -> str:
    r"""A string as COPY's text format reads it back unchanged.

    >>> print(_copy_escape("tab\there, newline\n, backslash\\"))
    tab\there, newline\n, backslash\\
    """
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


@lru_cache(maxsize=None)
def _tables() -> dict:
    """Lightweight Core tables naming the columns written (MLflow's ORM models are not needed)."""
    import sqlalchemy as sa

    def table(name, *columns):
        return sa.table(name, *(sa.column(c) for c in columns))

    return {
        "runs": table("runs", "run_uuid", "name", "source_type", "source_name", "entry_point_name",
                      "user_id", "status", "start_time", "end_time", "deleted_time", "source_version",
                      "lifecycle_stage", "artifact_uri", "experiment_id"),
        "tags": table("tags", "key", "value", "run_uuid"),
        "params": table("params", "key", "value", "run_uuid"),
        "latest_metrics": table("latest_metrics", "key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    }


_ENGINES: dict = {}


def _engine(uri: str):
    """One engine per URI and process, created as MLflow creates its own (pool_pre_ping)."""
    engine = _ENGINES.get(uri)
    if engine is None:
        import sqlalchemy as sa

        engine = _ENGINES[uri] = sa.create_engine(uri, pool_pre_ping=True)
    return engine


# --- the client path -------------------------------------------------------------------------

def write_runs_via_client(uri: str, records: list[RunRecord], client=None) -> list[str]:
    """The same runs through MlflowClient: create_run, log_batch, set_terminated each.

    The fallback where `fast_path_available` says no (the caller prints its reason
    once). Runs are committed one by one, as MLflow's API does: a crash can leave a
    run RUNNING with part of its points. MLflow makes the run ids (a record's
    run_id is not used); a `mlflow.parentRunId` tag that names an earlier record
    of the same call is rewritten to that record's new id.

    Returns:
        The new run ids, in the order of `records`.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    cl = client or MlflowClient(tracking_uri=uri)
    made: dict[str, str] = {}
    out = []
    for record in records:
        tags = checked_tags(record.tags)
        if tags.get(PARENT_TAG) in made:
            tags[PARENT_TAG] = made[tags[PARENT_TAG]]
        run = cl.create_run(record.experiment_id, start_time=record.start_time, tags=tags,
                            run_name=record.run_name)
        run_id = run.info.run_id
        cl.log_batch(run_id, metrics=[Metric(*_client_point(p)) for p in record.metrics],
                     params=[Param(k, v) for k, v in checked_params(record.params).items()])
        cl.set_terminated(run_id, status=record.status, end_time=record.end_time)
        made[record.run_id] = run_id
        out.append(run_id)
    return out


def _client_point(point) -> tuple:
    """A point with integer timestamp and step, as the fast path takes them (numpy ints too)."""
    key, value, ts, step = point
    if type(ts) is not int or type(step) is not int:
        ts, step = _as_ints(point, value)
    return key, value, ts, step


# --- small helpers ---------------------------------------------------------------------------

def _scheme(uri: str) -> str:
    """'sqlite', 'postgresql+psycopg2', 'http', 'databricks' ('databricks://profile' or bare);
    '' for a plain path (MLflow's file store)."""
    if "://" in uri:
        return uri.split("://", 1)[0].lower()
    head = uri.split(":", 1)[0].lower()
    return head if head in _SERVER_SCHEMES else ""


def _sqlite_path(uri: str) -> str | None:
    """The file behind a sqlite:// URI; None for an in-memory database."""
    rest = uri.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if path in ("", ":memory:") or path.startswith("file::memory:"):
        return None
    return path


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
