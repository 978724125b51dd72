"""A fast write path for finished runs into MLflow's own SQL tables, fenced by schema revision.

`MlflowClient.log_batch` spends 45-150 us a metric point in SQLAlchemy ORM work
(one mapped object per point, the session's cascade walk, the flush, a
read-modify-write of `latest_metrics`). `write_runs` (fast/write.py) inserts the same rows that
MLflow's `SqlAlchemyStore` would write for

    create_run(experiment_id, start_time, tags, run_name)
    log_batch(run_id, metrics, params)
    set_terminated(run_id, status, end_time)

with one executemany per table (COPY for the metric points on PostgreSQL), in
one transaction for any number of runs. What MLflow's client then reads back
(`get_run`, `get_metric_history`, `search_runs`, the UI's sampled charts) is the
same as for runs written through the client: tests/tracking/test_fast_write.py writes
the same runs both ways on SQLite and PostgreSQL and compares everything.

It writes below MLflow's public API, so it is fenced (`fast_path_available`):
only SQLite and PostgreSQL stores (postgresql+psycopg2://), never a tracking server, and only
when both the database's alembic revision and MLflow's own migration head are
the revision it was tested with (`TESTED_REVISION`). Anything else goes through
`write_runs_via_client`, the same records through MlflowClient.

Crash safety: `write_runs` (fast/write.py) is one database transaction. A process killed at any
point (kill -9 included) leaves either every run of the call or none of them:
SQLite rolls the journal back on next open, PostgreSQL discards an uncommitted
transaction. No run is ever left half-written or RUNNING by this path. Validation
errors (a bad metric name, an unknown experiment) also roll everything back.

mlflow and sqlalchemy are imported inside the functions: importing this module
costs nothing.

- fence.py    where the fast path may write: SQLite and PostgreSQL at the tested schema revision
- records.py  a finished run (RunRecord) and its rows, prepared and checked as MLflow's store does
- write.py    the rows into the tables in one transaction; the same records through MlflowClient
"""
