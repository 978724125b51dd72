"""Run the real `gdexp` command in-process (imports are paid once per test session)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path


def run_cli(*args: str) -> int:
    """gdexp ARGS in this process; returns its exit status (a message exit counts 1)."""
    import logging

    from hydra.core.global_hydra import GlobalHydra

    from gdexp.commands.main import main

    GlobalHydra.instance().clear()
    # Hydra points the root logger's handlers at this call's sys.stdout/stderr (pytest's capture,
    # closed after the test); a later call that logs before reconfiguring would write to them.
    handlers = list(logging.root.handlers)
    try:
        main(list(args))
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        GlobalHydra.instance().clear()
        logging.root.handlers[:] = handlers


@contextmanager
def store_in(folder):
    """A fresh SQLite store in `folder`, exported as MLFLOW_TRACKING_URI, cwd = folder.

    For module-scoped fixtures, which cannot use pytest's `store` fixture.
    """
    import pytest

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("GDEXP_PARENT_RUN_ID", raising=False)
        mp.chdir(folder)
        copy_migrated_schema(mp)
        yield uri


# MLflow's own schema creation, and the one migrated SQLite file that new stores are copied from.
_MIGRATION: dict = {}


def copy_migrated_schema(mp) -> None:
    """New SQLite stores (while `mp`, a pytest MonkeyPatch, is active) get their tables as a copy
    of one store migrated once per test session, instead of MLflow's ~40 schema migrations
    (about 2 s a store, most of a short test). The copy is the same file MLflow would have
    made: same tables, same alembic revision; MLflow then adds its Default experiment as
    usual. Tests of concurrent first creation start real `gdexp` processes, which migrate.
    """
    import mlflow.store.db.utils as db_utils

    real = _MIGRATION.setdefault("initialize", db_utils._initialize_tables)

    def initialize(engine) -> None:
        database = engine.url.database
        if engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return real(engine)
        import sqlite3

        source, target = sqlite3.connect(_migrated_template(real)), engine.raw_connection()
        try:
            source.backup(target.driver_connection)
        finally:
            target.close()
            source.close()

    mp.setattr(db_utils, "_initialize_tables", initialize)


def _migrated_template(initialize) -> str:
    """The session's migrated SQLite file (made on first use, removed at exit)."""
    if "template" not in _MIGRATION:
        import atexit
        import shutil
        import tempfile

        import sqlalchemy

        folder = Path(tempfile.mkdtemp(prefix="gdexp-migrated-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        engine = sqlalchemy.create_engine(f"sqlite:///{folder / 'mlflow.db'}")
        try:
            initialize(engine)
        finally:
            engine.dispose()
        _MIGRATION["template"] = str(folder / "mlflow.db")
    return _MIGRATION["template"]


def fail_artifacts(monkeypatch, when, error: BaseException) -> list:
    """Make writing a run's artifacts raise `error` when when(spec, call number) is true.

    Returns the list of learning rates whose artifacts were attempted, in order.
    """
    import gdexp.tracking.content as tracking

    real, calls = tracking.write_artifacts, []

    def flaky(folder, spec, traj):
        calls.append(spec.lr)
        if when(spec, len(calls)):
            raise error
        real(folder, spec, traj)

    monkeypatch.setattr(tracking, "write_artifacts", flaky)
    return calls
