"""Where the fast write path may write: SQL stores at the schema revision it was tested on."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

TESTED_REVISION = "dc11669786a5"     # MLflow 3.17's migration head, where this path was tested

TESTED_MLFLOW = "3.17"

_DRIVERS = ("sqlite", "postgresql+psycopg2")  # plain postgresql:// is psycopg 3 in SQLAlchemy 2.1: untested

_SERVER_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc", "file", "")

class FastPathUnavailable(RuntimeError):
    """The store is not one the fast path was tested on; the message says why in one line."""

def fast_path_available(uri: str) -> tuple[bool, str]:
    """Whether `write_runs` may write to the store at `uri`, and a one-line reason.

    Raises:
        OperationalError (sqlite3's): the store is locked by another process ("database is
            locked", after busy_timeout_ms()): not a reason to write another way; wait
            (gdexp.tracking.writes.wait_unlocked) and ask again.

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
    from gdexp.tracking.writes import locked

    try:
        found = store_revision(uri)
    except Exception as exc:  # any driver error: not a store we can vouch for ...
        if locked(exc):
            raise  # ... except a lock another process holds: the caller waits it out (writes.wait_unlocked)
        return False, f"cannot read the store's schema revision: {type(exc).__name__}: {_first_line(exc)}"
    if found != TESTED_REVISION:
        return False, f"the store's schema revision is {found}, the fast path was tested on {TESTED_REVISION}"
    return True, f"schema {TESTED_REVISION} (MLflow {TESTED_MLFLOW}), the revision the fast path was tested on"

@lru_cache(maxsize=None)
def mlflow_migration_head() -> str:
    """The head revision of the installed MLflow's alembic migrations, read from the scripts.

    Raises:
        ValueError: mlflow is not installed, or the scripts do not form a single head.
    """
    revisions, parents, versions = _migrations()
    heads = revisions - parents
    if len(heads) != 1:
        raise ValueError(f"{len(heads)} heads in {versions}: {sorted(heads)}")
    return next(iter(heads))


@lru_cache(maxsize=None)
def _migrations() -> tuple[frozenset, frozenset, Path]:
    """(every revision, every revision some script follows, the scripts' folder) of the installed
    MLflow's alembic migrations: `revision = "..."` / `down_revision = ...` parsed in
    mlflow/store/db_migrations/versions (the files alembic reads), so that mlflow itself is not
    imported.

    Raises:
        ValueError: mlflow is not installed.
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
    return frozenset(revisions), frozenset(parents), versions

def schema_mismatch(uri: str) -> str | None:
    """Why the installed MLflow cannot open the store (its SqlAlchemyStore refuses any schema
    revision but its own head, with a page of traceback): a newer MLflow's store, or an older
    one that `mlflow db upgrade` migrates; None when the revisions agree or cannot be read.

    An older revision is also what another process's MLflow shows while it creates the store
    (its migrations step through every revision): that is waited out (_settled_revision).

    Raises:
        OperationalError: the store is locked ("database is locked"): the caller waits.
    """
    from gdexp.tracking.writes import locked

    scheme = _scheme(uri)
    if scheme not in _DRIVERS or (scheme == "sqlite" and not Path(_sqlite_path(uri) or "").is_file()):
        return None  # not a store read here (a new SQLite file is MLflow's to create)
    try:
        found, head = store_revision(uri), mlflow_migration_head()
    except Exception as exc:  # noqa: BLE001 - not a store we can read: MLflow's client says why
        if locked(exc):
            raise
        return None
    if found and found != head and found in _migrations()[0]:
        found = _settled_revision(uri, found, head)
    if not found or found == head:
        return None
    from importlib.metadata import version

    if found not in _migrations()[0]:
        return (f"the store's schema ({found}) is from a newer MLflow than the installed {version('mlflow')}; "
                "upgrade gdexp's MLflow or use another store")
    return (f"the store's schema ({found}) is older than the installed MLflow {version('mlflow')}'s ({head}); "
            f"back the store up, then migrate it: mlflow db upgrade {uri}")


_MIGRATION_WAIT_S = 20.0  # the longest another process's migrations of a new store are waited for
_SETTLED_S = 1.0          # a revision unchanged this long is where the store is, not a step


def _settled_revision(uri: str, found: str, head: str) -> str:
    """The store's revision once it stops changing (another process migrating it) or reaches the
    head, read every 0.1 s for at most _MIGRATION_WAIT_S."""
    import time

    start = changed = time.monotonic()
    while found != head and time.monotonic() - changed < _SETTLED_S and time.monotonic() - start < _MIGRATION_WAIT_S:
        time.sleep(0.1)
        now = store_revision(uri)
        if now != found:
            found, changed = now, time.monotonic()
    return found




def store_revision(uri: str) -> str | None:
    """The alembic revision recorded in the store's `alembic_version` table."""
    with connect(uri) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else row[0]


class Connection:
    """A DB-API connection to a fenced store (sqlite3, or psycopg2 through SQLAlchemy's pool) with
    SQL written once for both: `?` placeholders (turned into psycopg2's `%s`).

    Attributes:
        dbapi: the driver's connection; sqlite: which driver.
    """

    def __init__(self, dbapi, sqlite: bool):
        self.dbapi, self.sqlite = dbapi, sqlite

    def _sql(self, text: str) -> str:
        return text if self.sqlite else text.replace("?", "%s")

    def execute(self, text: str, params=()):
        """One statement; returns the cursor (fetchone, fetchall)."""
        cursor = self.dbapi.cursor()
        cursor.execute(self._sql(text), params)
        return cursor

    def executemany(self, text: str, rows) -> None:
        self.dbapi.cursor().executemany(self._sql(text), rows)

    def begin(self) -> None:
        """Start the write transaction: on SQLite, the file's write lock taken now (waiting up
        to busy_timeout_ms() for another writer), not at the first INSERT."""
        if self.sqlite:
            self.dbapi.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.dbapi.commit()

    def rollback(self) -> None:
        self.dbapi.rollback()


@contextmanager
def connect(uri: str):
    """A Connection to the store at `uri` (SQLite or PostgreSQL through psycopg2), closed (its
    open transaction rolled back) on the way out.

    SQLite through the standard library's sqlite3, with what MLflow's sessions set
    (foreign keys enforced, busy_timeout_ms() waiting for another writer) and no implicit
    transactions (`Connection.begin` starts one): SQLAlchemy's import (~0.15 s) is not paid by
    a single run. PostgreSQL through SQLAlchemy's engine (its pool, pre-ping), as MLflow connects.

    Raises:
        sqlite3.OperationalError: "database is locked" past the busy timeout (and the driver's
            other errors, as they are).
    """
    if _scheme(uri) == "sqlite":
        import sqlite3

        path = _sqlite_path(uri)
        raw = sqlite3.connect(path, timeout=busy_timeout_ms() / 1000, isolation_level=None,
                              check_same_thread=False)
        try:
            raw.execute("PRAGMA foreign_keys = ON")
            yield Connection(raw, sqlite=True)
        finally:
            if raw.in_transaction:
                raw.rollback()
            raw.close()
        return
    raw = _engine(uri).raw_connection()
    try:
        yield Connection(raw, sqlite=False)
    finally:
        raw.rollback()
        raw.close()


def busy_timeout_ms() -> int:
    """SQLite's own wait for another writer, per statement: MLflow's 20 s, or less where
    GDEXP_LOCK_WAIT_S bounds gdexp's whole wait lower (a test's short locks)."""
    from gdexp.tracking.writes import MLFLOW_BUSY_S, lock_wait_s

    return int(min(MLFLOW_BUSY_S, lock_wait_s()) * 1000)

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


_ENGINES: dict = {}


def _engine(uri: str):
    """One engine per URI and process, created as MLflow creates its own (pool_pre_ping)."""
    engine = _ENGINES.get(uri)
    if engine is None:
        import sqlalchemy as sa

        engine = _ENGINES[uri] = sa.create_engine(uri, pool_pre_ping=True)
    return engine


# --- MLflow's private helpers the fast path calls, behind this fence --------------------------
# MLflow writes its rows through these; the fast path calls the same ones so that what it
# writes is what MlflowClient would write. Private (no stability promise): each is reached
# here only, and the fast path falls back to MlflowClient on a schema it was not tested on.

def random_run_name() -> str:
    """A run name as MLflow makes one for a run created without a name."""
    from mlflow.utils.name_utils import _generate_random_name

    return _generate_random_name()


def validate_run_id(run_id: str) -> None:
    """MLflow's check of a run id (MlflowException if malformed)."""
    if isinstance(run_id, str) and _RUN_ID.match(run_id):
        return
    from mlflow.utils.validation import _validate_run_id

    _validate_run_id(run_id)


def validate_metric_name(key: str) -> None:
    """MLflow's check of a metric's name (and its length)."""
    if not plain_name(key):
        validate_metric(key, 0.0, 0, 0)


def validate_metric(key: str, value, timestamp, step) -> None:
    """MLflow's check of one metric point (name, value, timestamp and step)."""
    from mlflow.utils.validation import _validate_metric

    _validate_metric(key, value, timestamp, step)


def validate_tag(key: str, value, path: str) -> tuple[str, str]:
    """MLflow's tag validator: (key, value) as MLflow would store them (value cut to 8,000 characters)."""
    if plain_name(key) and type(value) is str and len(value) <= MAX_TAG_LENGTH:
        return key, value
    from mlflow.utils.validation import _validate_tag

    tag = _validate_tag(key, value, path=path)
    return tag.key, tag.value


def validate_param(key: str, value: str, path: str) -> tuple[str, str]:
    """MLflow's param validator: (key, value) as MLflow would store them (value cut to 6,000 characters)."""
    if plain_name(key) and type(value) is str and len(value) <= MAX_PARAM_LENGTH:
        return key, value
    from mlflow.utils.validation import _validate_param

    param = _validate_param(key, value, path=path)
    return param.key, param.value


# --- MLflow's name rules restated (mlflow.utils.validation, MLflow 3.17), for names they pass -----
# A name these accept, MLflow's validators accept unchanged (tests/tracking/test_fast_write.py
# asks MLflow about every name these pass): the common case then needs no MLflow import, and
# every other name still goes to MLflow's own validator, for its error or its truncation.
_NAME = re.compile(r"^[/\w.\- :]*$")   # validate_param_and_metric_name, not on Windows
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")  # _RUN_ID_REGEX
MAX_KEY_LENGTH = 250       # MAX_ENTITY_KEY_LENGTH
MAX_PARAM_LENGTH = 6000    # MAX_PARAM_VAL_LENGTH
MAX_TAG_LENGTH = 8000      # MAX_TAG_VAL_LENGTH


def plain_name(name) -> bool:
    """Whether MLflow takes `name` as a param, tag or metric name as it is: its characters, its
    length, and a path that does not resolve to another name (path_not_unique).

    >>> plain_name("optimizer.lr"), plain_name("a/../b"), plain_name("."), plain_name("x" * 251)
    (True, False, False, False)
    """
    import posixpath

    if type(name) is not str or not 0 < len(name) <= MAX_KEY_LENGTH or os.name == "nt":
        return False
    if not _NAME.match(name):
        return False
    norm = posixpath.normpath(name)
    return norm == name and norm != "." and not norm.startswith(("..", "/"))
