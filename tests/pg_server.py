"""A throwaway PostgreSQL server on 127.0.0.1 (initdb + pg_ctl in a temporary folder).

Used by tests/tracking/test_fast_write.py, tests/e2e/test_scaleout.py and benchmarks/bench_write.py. Databases are made with CREATE DATABASE, optionally
as copies of a template (one MLflow migration per session, copied in ~0.1 s).
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PostgresMissing(RuntimeError):
    """PostgreSQL's binaries or psycopg2 are not installed."""


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A PostgreSQL cluster in a throwaway folder, listening on 127.0.0.1 only; stop() removes it.

    fsync is off: the data is thrown away, and the tests and benchmarks measure
    the database's work, not the disk's flush.
    """

    def __init__(self):
        initdb, self.pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not (initdb and self.pg_ctl):
            raise PostgresMissing("PostgreSQL's initdb/pg_ctl are missing")
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            raise PostgresMissing("psycopg2 (the `postgres` extra) is missing") from None
        self.root = Path(tempfile.mkdtemp(prefix="gdexp-pg-"))
        self.data, self.port = self.root / "data", free_port()
        self._as_user = []
        if os.geteuid() == 0:  # initdb refuses root: run as the postgres user
            shutil.chown(self.root, "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "pg.log"), "-w", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off", "start")
        self._made = 0

    def uri(self, name: str) -> str:
        """The SQLAlchemy URI of database `name` (psycopg2 driver)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

    def connect(self, name: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=name)

    def create(self, template: str | None = None) -> str:
        """A new database (a copy of `template`, which must have no open connection); its name."""
        self._made += 1
        name = f"db{self._made}"
        conn = self.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        conn.close()
        return name

    def drop(self, name: str) -> None:
        conn = self.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()

    def stop(self) -> None:
        subprocess.run([*self._as_user, self.pg_ctl, "-D", str(self.data), "-m", "fast", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *cmd: str) -> None:
        done = subprocess.run([*self._as_user, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.root / "pg.log"
            raise RuntimeError(f"{cmd[0]} failed: {done.stderr}\n{log.read_text() if log.exists() else ''}")


def mlflow_template(pg: Postgres) -> str:
    """A database MLflow has created and migrated, with no connection left open: a template."""
    from mlflow import MlflowClient
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    name = pg.create()
    MlflowClient(tracking_uri=pg.uri(name)).search_experiments()
    engine = SqlAlchemyStore._engine_map.pop(pg.uri(name), None)  # MLflow caches one engine per URI
    if engine is not None:
        engine.dispose()
    return name
