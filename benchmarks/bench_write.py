"""Issue 14, section 1: the reference sweep's points written into MLflow's store, three ways.

    python benchmarks/bench_write.py                        # 1,000 runs (the client path takes minutes)
    python benchmarks/bench_write.py --runs 200             # a quicker look
    python benchmarks/bench_write.py --runs 200 --postgres  # also on a throwaway PostgreSQL server

Workload: the reference sweep's shape, `--runs` runs (default 1,000), each with a
loss and a grad_norm curve of 775 points, 5 summary metrics, 15 params, 8 tags
(one of them the parent run), one timestamp per run: 1,555 points a run.

Printed, medians of --repeat (the client path: of --client-repeat), all from
this one run, the methods interleaved so that load on the machine hits all alike:
  floor        raw sqlite3 executemany of the same points, params and tags into
               tables of the same columns without keys (issue 14's floor);
               on PostgreSQL, psycopg2 COPY into such tables;
  floor+keys   the same (and a minimal row per run in `runs`) into MLflow's own
               tables: their keys and indexes (metrics has three) are what any
               writer of MLflow's schema pays;
  client       MlflowClient create_run / log_batch / set_terminated per run
               (gdexp.tracking.bulk_store.write_runs_via_client);
  fast         gdexp.tracking.bulk_store.write_runs (fence check included);
  prepare      of which the Python work (validation, NaN/inf, dedup, latest values).
Each method writes into a fresh copy of one migrated store (made before timing).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # tests/pg_server.py: the throwaway PostgreSQL

from gdexp.tracking import bulk_store  # noqa: E402
from gdexp.tracking.bulk_store import RunRecord  # noqa: E402

CURVE_POINTS = 775
STEPS = 10_000
T0 = 1_700_000_000_000

BARE_TABLES = """
CREATE TABLE metrics ("key" VARCHAR(250) NOT NULL, value FLOAT NOT NULL, timestamp BIGINT NOT NULL,
                      run_uuid VARCHAR(32) NOT NULL, step BIGINT NOT NULL, is_nan BOOLEAN NOT NULL);
CREATE TABLE params ("key" VARCHAR(250) NOT NULL, value VARCHAR(8000) NOT NULL, run_uuid VARCHAR(32) NOT NULL);
CREATE TABLE tags ("key" VARCHAR(250) NOT NULL, value VARCHAR(8000), run_uuid VARCHAR(32) NOT NULL);
"""


def reference_records(runs: int, experiment_id: str, parent_id: str) -> list[RunRecord]:
    """`runs` runs shaped like the reference sweep's (see the module docstring)."""
    rng = np.random.default_rng(0)
    steps = np.unique(np.r_[np.geomspace(1, STEPS - 1, 200).astype(int),
                            np.linspace(0, STEPS - 1, CURVE_POINTS).astype(int)])
    steps = np.sort(rng.choice(steps, CURVE_POINTS, replace=False)).tolist()
    records = []
    for i in range(runs):
        ts = T0 + 10 * i
        loss = np.exp(-np.asarray(steps) / (500.0 + i)) * (1 + 0.01 * rng.random(CURVE_POINTS))
        metrics = [("loss", v, ts, s) for s, v in zip(steps, loss.tolist())]
        metrics += [("grad_norm", v, ts, s) for s, v in zip(steps, (2 * loss).tolist())]
        metrics += [(k, float(v), ts, 0) for k, v in (("final_loss", loss[-1]), ("best_loss", loss.min()),
                                                      ("iterations", STEPS), ("lr_max_stable", 1e-3),
                                                      ("lr_optimal", 5e-4))]
        params = {f"group{j % 4}.param{j}": repr(0.1 * j + i) for j in range(15)}
        tags = {"mlflow.parentRunId": parent_id, "gdexp.config_hash": f"{i:016x}", "gdexp.version": "0.1",
                "gdexp.status": "converged", "gdexp.diverged": "false", "gdexp.stop_reason": "maxiter",
                "gdexp.data_sha256": "0" * 64, "gdexp.sweep": "reference"}
        records.append(RunRecord(experiment_id, run_name=f"lr-{i:04d}", tags=tags, params=params, metrics=metrics,
                                 start_time=ts, end_time=ts + 5))
    return records


# --- SQLite ----------------------------------------------------------------------------------

def sqlite_floor(path: Path, records, template: Path | None) -> float:
    """Raw sqlite3 executemany: into bare tables, or into a copy of MLflow's (`template`)."""
    if template is None:
        with sqlite3.connect(path) as conn:
            conn.executescript(BARE_TABLES)
    else:
        shutil.copy(template, path)
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    with conn:
        if template is not None:  # MLflow's tables: the runs rows the others point at
            conn.executemany("INSERT INTO runs (run_uuid, experiment_id, status, lifecycle_stage) "
                             "VALUES (?, 0, 'FINISHED', 'active')", ((r.run_id,) for r in records))
        for r in records:
            rid = r.run_id
            conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)" if template is None else
                             'INSERT INTO metrics ("key", value, timestamp, run_uuid, step, is_nan) '
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             ((k, v, ts, rid, s, 0) for k, v, ts, s in r.metrics))
            conn.executemany('INSERT INTO params ("key", value, run_uuid) VALUES (?, ?, ?)',
                             ((k, v, rid) for k, v in r.params.items()))
            conn.executemany('INSERT INTO tags ("key", value, run_uuid) VALUES (?, ?, ?)',
                             ((k, v, rid) for k, v in r.tags.items()))
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def sqlite_store(folder: Path, template: Path, name: str) -> tuple[str, str]:
    """A fresh copy of the migrated template with experiment "bench"; (uri, experiment id)."""
    from mlflow import MlflowClient

    path = folder / f"{name}.db"
    shutil.copy(template, path)
    uri = f"sqlite:///{path}"
    return uri, MlflowClient(tracking_uri=uri).create_experiment("bench")


# --- PostgreSQL ------------------------------------------------------------------------------

def pg_floor(pg, records, template: str | None) -> float:
    """psycopg2 COPY of the same rows: into bare tables, or into a copy of MLflow's (`template`)."""
    import io

    name = pg.create(template)
    conn = pg.connect(name)
    if template is None:
        with conn, conn.cursor() as cur:
            cur.execute(BARE_TABLES)
    t0 = time.perf_counter()
    with conn, conn.cursor() as cur:
        if template is not None:  # MLflow's tables: the runs rows the others point at
            cur.executemany("INSERT INTO runs (run_uuid, experiment_id, status, lifecycle_stage) "
                            "VALUES (%s, 0, 'FINISHED', 'active')", [(r.run_id,) for r in records])
        for table, columns, rows in (
                ("metrics", '"key", value, timestamp, run_uuid, step, is_nan',
                 (f"{k}\t{v!r}\t{ts}\t{r.run_id}\t{s}\tf\n" for r in records for k, v, ts, s in r.metrics)),
                ("params", '"key", value, run_uuid', (f"{k}\t{v}\t{r.run_id}\n" for r in records
                                                      for k, v in r.params.items())),
                ("tags", '"key", value, run_uuid', (f"{k}\t{v}\t{r.run_id}\n" for r in records
                                                    for k, v in r.tags.items()))):
            buf = io.StringIO()
            buf.writelines(rows)
            buf.seek(0)
            cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buf)
    elapsed = time.perf_counter() - t0
    conn.close()
    pg.drop(name)
    return elapsed


def pg_store(pg, template: str) -> tuple[str, str, str]:
    from mlflow import MlflowClient

    name = pg.create(template)
    uri = pg.uri(name)
    return uri, MlflowClient(tracking_uri=uri).create_experiment("bench"), name


# --- the three ways --------------------------------------------------------------------------

def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def prepare_only(records, location: str) -> float:
    t0 = time.perf_counter()
    for r in records:
        bulk_store._prepare(r, location)
    return time.perf_counter() - t0


def measure(backend: str, args, folder: Path) -> dict[str, list[float]]:
    """{method: [seconds, ...]} for one backend."""
    from mlflow import MlflowClient

    out: dict[str, list[float]] = {}
    pg = None
    if backend == "sqlite":
        template = folder / "template.db"
        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()  # migrate once
    else:
        from pg_server import Postgres, mlflow_template

        pg = Postgres()
        template = mlflow_template(pg)
    try:
        for rep in range(max(args.repeat, args.client_repeat)):
            methods = ["floor", "floor+keys", "fast"] if rep < args.repeat else []
            methods += ["client"] if rep < args.client_repeat else []
            for method in methods:
                name = f"{method}-{rep}".replace("+", "_")
                if method.startswith("floor"):
                    keys = template if method == "floor+keys" else None
                    records = reference_records(args.runs, "1", "0" * 32)
                    seconds = (sqlite_floor(folder / f"{name}.db", records, keys) if pg is None
                               else pg_floor(pg, records, keys))
                else:
                    if pg is None:
                        uri, exp = sqlite_store(folder, template, name)
                    else:
                        uri, exp, db = pg_store(pg, template)
                    cl = MlflowClient(tracking_uri=uri)
                    parent = cl.create_run(exp, run_name="parent").info.run_id
                    records = reference_records(args.runs, exp, parent)
                    if method == "fast":
                        seconds = timed(bulk_store.write_runs, uri, records)
                        location = cl.get_experiment(exp).artifact_location
                        out.setdefault("prepare", []).append(prepare_only(records, location))
                    else:
                        seconds = timed(bulk_store.write_runs_via_client, uri, records, cl)
                    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                    for engines in (bulk_store._ENGINES, SqlAlchemyStore._engine_map):
                        engine = engines.pop(uri, None)
                        if engine is not None:
                            engine.dispose()
                    if pg is not None:
                        pg.drop(db)
                out.setdefault(method, []).append(seconds)
                print(f"  {backend:<10} {method:<11} repeat {rep + 1}: {seconds:8.2f} s", flush=True)
                for leftover in folder.glob(f"{name}.db*"):
                    leftover.unlink()
    finally:
        if pg is not None:
            pg.stop()
    return out


def report(backend: str, times: dict[str, list[float]], points: int, args) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    label = {"floor": "floor (no keys)", "floor+keys": "floor (MLflow's keys)", "client": "client (log_batch)",
             "fast": "fast path", "prepare": "  of which Python prep"}
    print(f"\n{backend}: {args.runs:,} runs, {points:,} points; medians of {args.repeat} "
          f"(client: {args.client_repeat})")
    for key in ("floor", "floor+keys", "fast", "prepare", "client"):
        if key in med:
            print(f"  {label[key]:<24} {med[key]:9.2f} s  {med[key] / points * 1e6:7.2f} us/point")
    f, fk, fast, client = med["floor"], med["floor+keys"], med["fast"], med.get("client")
    print(f"  fast / floor             {fast / f:9.2f}x   (issue 14's target <= 5x)")
    print(f"  fast / floor with keys   {fast / fk:9.2f}x")
    if client is not None:
        print(f"  client / fast            {client / fast:9.2f}x")
        print(f"  client / floor           {client / f:9.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the floors and the fast path")
    parser.add_argument("--client-repeat", type=int, default=1, help="repeats of the (slow) client path")
    parser.add_argument("--postgres", action="store_true", help="also on a throwaway PostgreSQL server")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()

    points = args.runs * (2 * CURVE_POINTS + 5)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"SQLite {sqlite3.sqlite_version}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
        for backend in (["sqlite"] if not args.no_sqlite else []) + (["postgresql"] if args.postgres else []):
            results[backend] = measure(backend, args, Path(tmp))
    for backend, times in results.items():
        report(backend, times, points, args)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
