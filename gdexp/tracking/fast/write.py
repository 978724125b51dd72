"""Finished runs into MLflow's SQL tables in one transaction (or through MlflowClient where the
fence says no)."""
from __future__ import annotations

from gdexp.tracking.fast.fence import FastPathUnavailable, connect, fast_path_available
from gdexp.tracking.fast.records import (PARENT_TAG, TERMINAL, RunRecord, _as_ints, _metric_rows, _prepare,
                                         checked_params, checked_tags)

_CHUNK_POINTS = 200_000  # metric rows prepared and sent per executemany / COPY (bounds memory)

_SQLITE_CACHE_KIB = 256 * 1024  # page cache of the writing connection while it writes

def write_runs(uri: str, records: list[RunRecord], replace: bool = False) -> list[str]:
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
    the store makes the whole call fail and roll back, unless `replace`. On SQLite the file's write
    lock is held for the whole call (about 7 us a point on a 2-core machine):
    other writers wait up to their busy timeout (MLflow's: 20 s), so where other
    processes write to the same file, write a few hundred runs per call.

    Args:
        uri: a store for which `fast_path_available(uri)` is True.
        records: the runs; a child's `mlflow.parentRunId` tag may name any run id.
        replace: for gdexp's live runs (gdexp.tracking.live): a record may be RUNNING, and a
            run already in the store under a record's run_id is written over (its runs row,
            tags, params and metric points deleted first, in the same transaction), so the
            store then holds exactly what writing the record alone would have written.

    Returns:
        The run ids, in the order of `records`.

    Raises:
        FastPathUnavailable: the fence said no (its reason is the message).
        sqlite3.OperationalError: "database is locked": another process held the SQLite
            file past busy_timeout_ms(); nothing was written (gdexp.tracking.bulk waits and retries).
        mlflow.exceptions.MlflowException: an invalid name, value, status, run id,
            or a missing / deleted experiment (MLflow's own messages).
        IntegrityError (the driver's: sqlite3, psycopg2): a run id that exists already.
    """
    ok, reason = fast_path_available(uri)
    if not ok:
        raise FastPathUnavailable(reason)
    if not records:
        return []
    with connect(uri) as conn:
        locations = _experiment_locations(conn, {r.experiment_id for r in records})
        conn.commit()  # end the read: the write lock is then taken by begin()
        if conn.sqlite:
            # A page cache that holds the three metrics indexes being updated (this connection's own).
            conn.execute(f"PRAGMA cache_size = {-_SQLITE_CACHE_KIB}")
        conn.begin()
        if replace:
            _delete(conn, [r.run_id for r in records])
        _insert(conn, records, locations, live=replace)
        conn.commit()  # connect() rolls back whatever an error left open
    return [r.run_id for r in records]

def update_run(uri: str, run_id: str, *, metrics=(), params: dict | None = None, tags: dict | None = None,
               status: str | None = None, end_time: int | None = None) -> bool:
    """Log to an existing run and (optionally) close it, in one transaction, as MLflow 3.17's
    SqlAlchemyStore.log_batch and set_terminated write: the run's other rows (and the rows of
    other tables that point at it) are left as they are.

    metrics: (key, value, timestamp_ms, step) points, added (a point already stored is not
    added twice) and `latest_metrics` moved where a point is newer (step, timestamp, value);
    params: added, an existing key only with its value unchanged; tags: set (replacing a
    value); status, end_time: the run's new status (FINISHED, FAILED, KILLED) and end time
    (None: now).

    Returns:
        False, writing nothing, where MLflow would refuse or decide otherwise: no active run of
        that id, or a param already logged with another value (the caller then asks MLflow's
        client, for its error); True once written.

    Raises:
        FastPathUnavailable: the fence said no. MlflowException: an invalid name or value
        (MLflow's validators); sqlite3.OperationalError "database is locked" past busy_timeout_ms().
    """
    import time

    ok, reason = fast_path_available(uri)
    if not ok:
        raise FastPathUnavailable(reason)
    if status is not None and status not in TERMINAL:
        raise ValueError(f"status must be one of {TERMINAL}, got {status!r}")
    new_tags, new_params = checked_tags(tags or {}), checked_params(params or {})
    points, latest = _metric_rows(run_id, metrics)
    with connect(uri) as conn:
        conn.begin()
        if conn.execute("SELECT 1 FROM runs WHERE run_uuid = ? AND lifecycle_stage = 'active'",
                        (run_id,)).fetchone() is None:
            return False
        old = dict(conn.execute('SELECT "key", value FROM params WHERE run_uuid = ?', (run_id,)).fetchall())
        if any(old.get(k, v) != v for k, v in new_params.items()):
            return False
        conn.executemany(_INSERTS["params"], [(k, v, run_id) for k, v in new_params.items() if k not in old])
        conn.executemany('DELETE FROM tags WHERE run_uuid = ? AND "key" = ?', [(run_id, k) for k in new_tags])
        conn.executemany(_INSERTS["tags"], [(k, v, run_id) for k, v in new_tags.items()])
        stored = set(conn.execute('SELECT "key", value, "timestamp", run_uuid, step, is_nan FROM metrics '
                                  'WHERE run_uuid = ?', (run_id,)).fetchall()) if points else set()
        conn.executemany(_POINTS, [p for p in points if p not in stored])
        for key, (step, ts, value, nan) in latest.items():
            best = conn.execute('SELECT step, "timestamp", value FROM latest_metrics WHERE run_uuid = ? AND '
                                '"key" = ?', (run_id, key)).fetchone()
            if best is None:
                conn.execute(_INSERTS["latest_metrics"], (key, value, ts, step, nan, run_id))
            elif (step, ts, value) > tuple(best):
                conn.execute('UPDATE latest_metrics SET value = ?, "timestamp" = ?, step = ?, is_nan = ? '
                             'WHERE run_uuid = ? AND "key" = ?', (value, ts, step, nan, run_id, key))
        if status is not None:
            conn.execute("UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?",
                         (status, end_time or int(time.time() * 1000), run_id))
        conn.commit()
    return True


def write_dataset_inputs(uri: str, inputs: list[tuple[str, str, dict]], tags: dict[str, str]) -> None:
    """Each run's data set as MLflow's `log_inputs` records one DatasetInput, in one transaction.

    inputs: (run_id, experiment_id, dataset) with dataset's keys name, digest, source_type and
    source (gdexp.tracking.content.dataset); tags: the input's tags (mlflow.data.context). As
    MLflow 3.17's SqlAlchemyStore._log_inputs_impl: a data set already in the experiment under
    the same name and digest is reused; a run that has it as an input already gets no second
    one; new rows get uuid4 hex ids.

    Raises:
        FastPathUnavailable: the fence said no, or a value is past MLflow's limits
            (dataset_inputs_fit); the caller logs through MLflow's client.
    """
    ok, reason = fast_path_available(uri)
    if not ok:
        raise FastPathUnavailable(reason)
    if not all(dataset_inputs_fit(dataset, tags) for _, _, dataset in inputs):
        raise FastPathUnavailable("a data set's name, digest or source is past MLflow's limits")
    if not inputs:
        return
    import uuid

    with connect(uri) as conn:
        conn.begin()
        for run_id, experiment_id, dataset in inputs:
            found = conn.execute("SELECT dataset_uuid FROM datasets WHERE experiment_id = ? AND name = ? "
                                 "AND digest = ?", (int(experiment_id), dataset["name"], dataset["digest"])).fetchone()
            if found is None:
                found = (uuid.uuid4().hex,)
                conn.execute("INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, "
                             "dataset_source, dataset_schema, dataset_profile) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                             (found[0], int(experiment_id), dataset["name"], dataset["digest"],
                              dataset["source_type"], dataset["source"]))
            edge = (found[0], run_id)
            if conn.execute("SELECT 1 FROM inputs WHERE source_type = 'DATASET' AND source_id = ? AND "
                            "destination_type = 'RUN' AND destination_id = ?", edge).fetchone():
                continue
            input_id = uuid.uuid4().hex
            conn.execute("INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, destination_id) "
                         "VALUES (?, 'DATASET', ?, 'RUN', ?)", (input_id, *edge))
            conn.executemany("INSERT INTO input_tags (input_uuid, name, value) VALUES (?, ?, ?)",
                             [(input_id, k, v) for k, v in tags.items()])
        conn.commit()


def dataset_inputs_fit(dataset: dict, tags: dict[str, str]) -> bool:
    """Whether MLflow's validators (mlflow.utils.validation._validate_dataset_inputs) take the data
    set and its input tags as they are: every value a string within MLflow's limits."""
    limits = {"name": 500, "digest": 36, "source_type": None, "source": 65535}
    fields_fit = all(isinstance(dataset.get(k), str) and (n is None or len(dataset[k]) <= n)
                     for k, n in limits.items())
    return fields_fit and all(isinstance(k, str) and isinstance(v, str) and len(k) <= 255 and len(v) <= 500
                              for k, v in tags.items())


def _delete(conn, run_ids: list[str]) -> None:
    """Every row of these runs (none for a run not in the store), children before the runs row."""
    for start in range(0, len(run_ids), 500):  # SQLite's limit on bound parameters
        ids = run_ids[start:start + 500]
        marks = ", ".join("?" * len(ids))
        for table in ("metrics", "latest_metrics", "tags", "params", "runs"):
            conn.execute(f"DELETE FROM {table} WHERE run_uuid IN ({marks})", ids)


def _insert(conn, records: list[RunRecord], locations: dict[str, str], live: bool = False) -> None:
    """Prepare and insert the records chunk by chunk, so memory stays bounded by the chunk."""
    runs, tags, params, latest, points = [], [], [], [], []
    for record in records:
        run, run_tags, run_params, run_latest, run_points = _prepare(record, locations[str(record.experiment_id)],
                                                                     live)
        runs.append(run)
        tags += run_tags
        params += run_params
        latest += run_latest
        points += run_points
        if len(points) >= _CHUNK_POINTS:
            _flush(conn, runs, tags, params, latest, points)
            runs, tags, params, latest, points = [], [], [], [], []
    _flush(conn, runs, tags, params, latest, points)

def _experiment_locations(conn, experiment_ids) -> dict[str, str]:
    """experiment_id -> artifact_location; MLflow's errors for a missing or deleted experiment."""
    wanted = {str(e): int(e) for e in experiment_ids}
    ids = sorted(set(wanted.values()))
    rows = conn.execute("SELECT experiment_id, artifact_location, lifecycle_stage FROM experiments "
                        f"WHERE experiment_id IN ({', '.join('?' * len(ids))})", ids).fetchall()
    found = {row[0]: row for row in rows}
    out = {}
    for key, exp_id in wanted.items():
        row = found.get(exp_id)
        if row is None or row[2] != "active":
            from mlflow.exceptions import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, MlflowException

            if row is None:
                raise MlflowException(f"No Experiment with id={exp_id} exists", RESOURCE_DOES_NOT_EXIST)
            raise MlflowException(f"The experiment {exp_id} must be in the 'active' state. "
                                  f"Current state is {row[2]}.", INVALID_PARAMETER_VALUE)
        out[key] = row[1]
    return out

def _flush(conn, runs, tags, params, latest, points) -> None:
    """Insert one chunk: runs first (the other tables' foreign keys point at them)."""
    for table, rows in (("runs", runs), ("tags", tags), ("params", params), ("latest_metrics", latest)):
        if rows:
            conn.executemany(_INSERTS[table], [tuple(row[c] for c in _COLUMNS[table]) for row in rows])
    if not points:
        return
    if conn.sqlite:  # sqlite3's executemany straight from the tuples
        conn.executemany(_POINTS, points)
    else:  # psycopg2 (the fence lets no other driver through)
        _copy_points(conn, points)

# The columns written, by table (MLflow 3.17's models), quoted in the SQL: `key` and `timestamp` are SQL words.
_COLUMNS = {
    "runs": ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
             "start_time", "end_time", "deleted_time", "source_version", "lifecycle_stage", "artifact_uri",
             "experiment_id"),
    "tags": ("key", "value", "run_uuid"),
    "params": ("key", "value", "run_uuid"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
}

_INSERTS = {table: "INSERT INTO {} ({}) VALUES ({})".format(table, ", ".join(f'"{c}"' for c in columns),
                                                           ", ".join("?" * len(columns)))
            for table, columns in _COLUMNS.items()}

_POINT_COLUMNS = ", ".join(f'"{c}"' for c in ("key", "value", "timestamp", "run_uuid", "step", "is_nan"))

_POINTS = f"INSERT INTO metrics ({_POINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"

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
    cursor = conn.dbapi.cursor()
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
