"""Where runs go: the tracking URI, the MLflow client, the experiment, and a safe first creation.

Runs are written through MlflowClient, never the fluent API: no process-wide
"active run" to collide with, and a parent run can be made in the launching
process while its jobs run in the same one. The client `client()` returns is
guarded (gdexp.tracking.writes): its writes are never cut in half by Ctrl-C or
SIGTERM, and a store another process holds locked is waited for, with backoff,
up to LOCK_WAIT_S.
"""
from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

from gdexp.core.errors import ConfigError, NotFound
from gdexp.core.resources import check_disk
from gdexp.tracking import env, interrupts
from gdexp.tracking.guards import (check_readable_store, check_store_filesystem, check_store_uri, check_writable,
                                   local_dir)
from gdexp.tracking.uris import sqlite_path
from gdexp.tracking.writes import GuardedClient, StoreLocked, wait_unlocked

log = logging.getLogger(__name__)


def resolve_uri(configured: str | None, cwd: str | os.PathLike | None = None) -> str:
    """The tracking URI a run uses: MLFLOW_TRACKING_URI, then the config, then ./mlflow.db.

    A relative sqlite path is made absolute against `cwd` (default: the
    current folder) so every job of a sweep, whatever its working folder,
    writes to one store.

    >>> resolve_uri("sqlite:///runs/m.db", cwd="/data")
    'sqlite:////data/runs/m.db'
    """
    uri = env.get(env.TRACKING_URI) or configured
    if uri == "???":  # tracking=server without its address
        raise ConfigError("tracking.uri", None, "tracking=server needs the server's address: "
                          "tracking.uri=http://HOST:PORT (or MLFLOW_TRACKING_URI)")
    base = Path(cwd or os.getcwd())
    if not uri:
        return f"sqlite:///{(base / 'mlflow.db').resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///'):]).resolve()}"
    return uri


def client(uri: str) -> "GuardedClient":
    """An MlflowClient for `uri`, its store opened (created and migrated if new), guarded.

    Creating a SQLite store runs MLflow's schema migrations, and two processes
    doing that at once on one file fail (`duplicate column`, alembic errors):
    the first opening of a SQLite file happens under a file lock beside it
    (`<file>.lock`), so the second process waits and then finds it migrated.
    A new SQLite store is a copy of an empty one made by MLflow's migrations
    earlier on this machine for the same schema revision (see fresh_sqlite_store),
    which saves the seconds the migrations take.

    Raises:
        ConfigError: the store stayed locked by another process for LOCK_WAIT_S, or is at a
            schema the installed MLflow cannot open (fence.schema_mismatch), before MLflow's
            client refuses it with a page of traceback.
    """
    from gdexp.tracking.fast.fence import schema_mismatch

    env.http_client_defaults(uri)
    quiet_store_errors()
    try:
        mismatch = wait_unlocked(lambda: schema_mismatch(uri), uri)
        if mismatch is not None:
            raise ConfigError("tracking.uri", uri, mismatch)
        return GuardedClient(wait_unlocked(functools.partial(_open, uri), uri))
    except StoreLocked as exc:
        raise ConfigError("tracking.uri", uri, str(exc)) from None


def read_client(uri: str) -> "GuardedClient":
    """An MlflowClient for an existing store, opened to read it: never created, migrated or locked.

    For every reader (gdexp report, compare, rerun, load_runs, load_curve): `client` would
    create a missing SQLite file (an empty ~1 MB store) and a `<file>.lock` beside it.

    Raises:
        ConfigError: one line, before MLflow is asked: no store there
            (guards.check_readable_store), or it stayed locked for LOCK_WAIT_S.
    """
    check_readable_store(uri)
    env.http_client_defaults(uri)
    quiet_store_errors()

    def _read():
        from mlflow import MlflowClient

        cl = MlflowClient(tracking_uri=uri)
        cl._tracking_client.store  # noqa: B018 - opened here, so a locked store is waited for
        return cl

    try:
        return GuardedClient(wait_unlocked(_read, uri))
    except StoreLocked as exc:
        raise ConfigError("tracking.uri", uri, str(exc)) from None


def find_run(cl, run_id: str, key: str):
    """The run `run_id` of the store `cl` reads; NotFound (one line, under the name `key` the
    user gave the id by: --sweep, RUN_ID, sweep, ...) when the store has no such run."""
    from mlflow.exceptions import MlflowException

    try:
        return cl.get_run(run_id)
    except MlflowException as exc:
        # A SQL store says RESOURCE_DOES_NOT_EXIST; a server may call a malformed id an invalid value.
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise NotFound(key, run_id, f"no such run in {cl.tracking_uri}") from None


def search(cl, experiment_ids: list[str], filter_string: str) -> list:
    """Every run matching the filter, page after page (MLflow returns at most 50,000 a page)."""
    runs, token = [], None
    while True:
        page = cl.search_runs(experiment_ids, filter_string, max_results=50000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _open(uri: str):
    from mlflow import MlflowClient

    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri)
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"), interrupts.deferred():  # a migration is never cut in half either
        created = not path.exists() and fresh_sqlite_store(path)
        cl = MlflowClient(tracking_uri=uri)
        cl._tracking_client.store  # noqa: B018 - opens (creates, migrates) the store under the lock
        if not created:
            remember_fresh_store(path)
    return cl


def template_folder() -> Path:
    """Where migrated empty stores are kept: $GDEXP_CACHE_DIR, else ~/.cache/gdexp."""
    return Path(os.environ.get("GDEXP_CACHE_DIR") or Path.home() / ".cache" / "gdexp")


def fresh_sqlite_store(path: Path) -> bool:
    """Make `path` a new, empty MLflow store by copying a migrated one of the installed MLflow's
    schema revision, if one was kept (remember_fresh_store); False if none was.

    Only MLflow's own Default experiment is in it; its artifact location and times are set as
    MLflow sets them for a new store (<current folder>/mlruns/0, now).
    """
    import shutil
    import sqlite3
    import time

    template = _template_path()
    if template is None or not template.is_file():
        return False
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    shutil.copyfile(template, part)
    now = int(time.time() * 1000)
    with sqlite3.connect(part) as conn:
        conn.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                     "WHERE experiment_id = 0", (str(Path.cwd().resolve() / "mlruns" / "0"), now, now))
    conn.close()
    os.replace(part, path)
    return True


def remember_fresh_store(path: Path) -> None:
    """Keep a copy of a store MLflow has just created and migrated, if it is still empty (no run,
    only the Default experiment) and none of its revision is kept yet."""
    import shutil
    import sqlite3

    template = _template_path()
    if template is None or template.is_file():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            experiments = conn.execute("SELECT COUNT(*) FROM experiments").fetchone()[0]
        conn.close()
        if revision is None or revision[0] != template.stem.rsplit("-", 1)[-1] or runs or experiments != 1:
            return
        template.parent.mkdir(parents=True, exist_ok=True)
        part = template.with_name(f".{template.name}.{os.getpid()}.part")
        shutil.copyfile(path, part)
        os.replace(part, template)
    except (OSError, sqlite3.Error):
        return  # a cache: without it, new stores are migrated by MLflow as before


def _template_path() -> Path | None:
    from gdexp.tracking.fast.fence import mlflow_migration_head

    try:
        return template_folder() / f"mlflow-store-{mlflow_migration_head()}.db"
    except (OSError, ValueError):
        return None


# A SQL store that cannot take writes for now: full disk, I/O error, a lock held past the timeout.
_UNAVAILABLE_SQL = ("database or disk is full", "disk i/o error", "database is locked", "no space left on device",
                    "could not extend file", "connection refused", "server closed the connection")


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` means the store could not take the write (after the client's retries): the
    run is then kept on disk for `gdexp resume`, not failed.

    MLflow wraps a refused connection, a timeout or too many 5xx answers in an
    MlflowException "API request to ... failed ..."; the requests error is its context.
    A SQL store says so in its OperationalError (full disk, I/O error, locked).
    """
    import sys

    requests = sys.modules.get("requests")  # not imported: none of its errors can have been raised
    network = (ConnectionError, TimeoutError) + ((requests.ConnectionError, requests.Timeout) if requests else ())
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        # TimeoutError: StoreLocked too, a store locked past LOCK_WAIT_S
        if isinstance(exc, network):
            return True
        message = getattr(exc, "message", None) or str(exc)
        if type(exc).__name__ == "MlflowException" and message.startswith("API request to ") and " failed " in message:
            return True
        if type(exc).__name__ == "OperationalError" and any(m in str(exc).lower() for m in _UNAVAILABLE_SQL):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def check_experiment_found(found, name: str, uri: str, key: str) -> None:
    """NotFound (one line, under the name `key` the user gave it by) where the store at `uri` has no
    experiment `name` (`found` None) or only a deleted one (check_not_deleted). `found`: MLflow's
    Experiment, or fast.read.ExperimentRow (the same fields)."""
    if found is None:
        raise NotFound(key, name, f"no experiment named {name!r} in {uri}")
    check_not_deleted(found, uri, key)


def check_not_deleted(experiment, uri: str, key: str = "tracking.experiment") -> None:
    """NotFound (one line, before anything runs) for an experiment that was deleted (MLflow keeps it,
    under its name, until `mlflow gc`): naming it, its store, and how to restore it or choose another."""
    if experiment.lifecycle_stage != "deleted":
        return
    env_part = "" if uri.startswith(("http://", "https://")) else f"MLFLOW_TRACKING_URI={uri} "
    raise NotFound(key, experiment.name, f"experiment {experiment.name!r} (id {experiment.experiment_id}) in "
                   f"{uri} is deleted; restore it with `{env_part}mlflow experiments restore --experiment-id "
                   f"{experiment.experiment_id}`, or choose another name: tracking.experiment=NAME")


class _Handled(logging.Filter):
    # MLflow logs every SQLAlchemy OperationalError it catches with its traceback (mlflow.store.db.utils),
    # then raises it: a locked store gdexp waits out, a full disk or an I/O error it keeps the runs
    # on disk for, are said by gdexp in one line, not after two pages of SQLAlchemy's.
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            return not unreachable(error)
        return not any(m in record.getMessage().lower() for m in _UNAVAILABLE_SQL)


@functools.cache
def quiet_store_errors() -> None:
    """Leave out of MLflow's log the store errors gdexp says itself (`unreachable` ones), once a process."""
    logging.getLogger("mlflow.store.db.utils").addFilter(_Handled())


def experiment_id(cl, name: str) -> str:
    """The id of experiment `name`, created on first use.

    Raises:
        NotFound: the experiment was deleted (check_not_deleted).

    On a SQLite store its artifacts go beside the database file
    (<db folder>/mlartifacts/<name>), not into ./mlruns of whatever folder
    the first run happened to start in.
    """
    found = cl.get_experiment_by_name(name)
    if found is not None:
        check_not_deleted(found, cl.tracking_uri)
        return found.experiment_id
    path = sqlite_path(cl.tracking_uri)
    location = None if path is None else sqlite_artifact_location(path, name)
    try:
        return cl.create_experiment(name, artifact_location=location)
    except Exception:
        # Another process created it between our look-up and create.
        found = cl.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def sqlite_artifact_location(path: Path, name: str) -> str:
    """Where a SQLite store's experiment `name` keeps its runs' files: beside the database file.

    >>> sqlite_artifact_location(Path("/data/mlflow.db"), "my sweep")
    'file:///data/mlartifacts/my_sweep'
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return (path.parent / "mlartifacts" / slug).as_uri()


class Store:
    """An MLflow store and the experiment runs are written to; one per (uri, experiment) and process.

    Attributes:
        uri: the resolved tracking URI.
        experiment: the experiment's name.
        client: its MlflowClient, opened on first use (the store created and migrated if new).
        down: the error that showed the store not answering, once it has (then
            this process stops asking it: runs are kept on disk instead).
        fast: whether gdexp.tracking.bulk may write below MLflow's API here (None: not asked yet).

    On a store the fast path may write (an existing SQLite file or a PostgreSQL database at
    the tested schema revision, gdexp.tracking.fast.fence) whose experiment exists, the
    experiment is found by SQL and the client is never opened unless asked for: a single run
    written there does not import MLflow (~2 s of a ~3 s run).
    """

    def __init__(self, uri: str, experiment: str):
        self.uri, self.experiment = uri, experiment
        self._client = None
        self._experiment_id: str | None = None
        self._artifact_location: str | None = None
        self.down: BaseException | None = None
        self.fast: bool | None = None
        self._find_by_sql()

    @property
    def client(self) -> "GuardedClient":
        if self._client is None:
            self._client = client(self.uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = experiment_id(self.client, self.experiment)
        return self._experiment_id

    @property
    def artifact_location(self) -> str:
        """The experiment's artifact root (each run's files go under <root>/<run id>/artifacts)."""
        if self._artifact_location is None:
            self._artifact_location = self.client.get_experiment(self.experiment_id).artifact_location
        return self._artifact_location

    def _find_by_sql(self) -> None:
        """The experiment's id and artifact root read from the store's tables, where the fence
        allows it and the experiment is active; on a SQLite store, a new store copied from a
        migrated empty one (fresh_sqlite_store) and a new experiment inserted as MLflow's
        create_experiment inserts it. Otherwise (no migrated copy yet, a deleted experiment, a
        server) left to the client, which creates, migrates and says why not."""
        from gdexp.tracking.fast.fence import connect, fast_path_available, schema_mismatch

        path = sqlite_path(self.uri)
        if path is not None and not path.exists() and not _copy_fresh(path):
            return

        def find():
            mismatch = schema_mismatch(self.uri)  # another process's migration of a new store waited out
            if mismatch is not None:
                raise ConfigError("tracking.uri", self.uri, mismatch)
            ok, why = fast_path_available(self.uri)
            if not ok:
                if self.uri.startswith(("sqlite:", "postgresql")):  # a server's way is the client
                    log.warning(f"gdexp: writing runs through MLflow's client, one at a time: {why}")
                self.fast = False
                return None
            with connect(self.uri) as conn:
                found = _active_experiment(conn, self.experiment)
                name = self.experiment
                if found is None and path is not None and isinstance(name, str) and 0 < len(name) <= 500:
                    found = _insert_experiment(conn, name, sqlite_artifact_location(path, name))
                return found

        try:
            found = wait_unlocked(find, self.uri)
        except StoreLocked as exc:
            raise ConfigError("tracking.uri", self.uri, str(exc)) from None
        if found is not None:
            self.fast = True
            self._experiment_id, self._artifact_location = str(found[0]), found[1]


def _active_experiment(conn, name: str) -> tuple | None:
    """(id, artifact location) of the active experiment `name`, or None."""
    return conn.execute("SELECT experiment_id, artifact_location FROM experiments "
                        "WHERE name = ? AND lifecycle_stage = 'active'", (name,)).fetchone()


def _insert_experiment(conn, name: str, location: str) -> tuple | None:
    """A new experiment, the row MLflow 3.17's SqlAlchemyStore.create_experiment writes (no tags,
    the default workspace); None when `name` exists, deleted (the client says so)."""
    import sqlite3
    import time

    now = int(time.time() * 1000)
    conn.begin()
    try:
        conn.execute("INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, "
                     "last_update_time) VALUES (?, ?, 'active', ?, ?)", (name, location, now, now))
        conn.commit()
    except sqlite3.IntegrityError:  # another process made it first, or it exists deleted
        conn.rollback()
    return _active_experiment(conn, name)


def _copy_fresh(path: Path) -> bool:
    """A new SQLite store at `path` copied from a migrated empty one, under the lock MLflow's
    first opening takes (client); False when none is kept yet (the client then migrates)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"), interrupts.deferred():
        return path.exists() or fresh_sqlite_store(path)


def check_artifacts_writable(location: str, uri: str, curves: tuple[int, int, int] | None = None) -> None:
    """Refuse an experiment whose artifact folder (a local one) cannot be written, or has no room
    for the sweep's curve files: else every run would descend first and then fail on its files.

    Args:
        location: the experiment's artifact location; uri: its store (named in the error).
        curves: (bytes of the runs' curve.parquet files, an upper bound; runs; largest
            stopping.maxiter), for gdexp.core.resources.check_disk; None = not checked.
    """
    folder = local_dir(location)
    reason = None if folder is None else check_writable(folder)
    if reason:
        raise ConfigError("tracking.uri", uri, f"the artifact folder {folder} is not writable "
                          f"({reason}); fix its permissions or use another store")
    if folder is not None and curves is not None:
        check_disk(curves[0], folder, curves[1], curves[2])


# One Store per (uri, experiment) in this process: a sweep's jobs share one client and
# experiment look-up. A new sweep forgets them (forget_stores), so a store found down
# in an earlier sweep of the same process is asked again.
_OPEN: dict[tuple[str, str], Store] = {}


def open_store(uri: str, experiment: str) -> Store:
    """The Store for (uri, experiment), opened once per process.

    Checked first (ConfigError, nothing written): a URI gdexp cannot use (guards.check_store_uri),
    SQLite over NFS, and an artifact folder that cannot be written.
    """
    key = (uri, experiment)
    if key not in _OPEN:
        check_store_uri(uri)
        check_store_filesystem(uri)
        store = Store(uri, experiment)
        check_artifacts_writable(store.artifact_location, uri)
        _OPEN[key] = store
    return _OPEN[key]


def forget_stores() -> None:
    """Drop the open stores (a new sweep asks each store again)."""
    _OPEN.clear()


def where_to_look(uri: str, experiment_id: str, run_id: str, single: bool = False) -> str:
    """Where a sweep's (or a single run's) runs are, and the command that opens the MLflow UI on them."""
    if uri.startswith("sqlite:"):
        how = f"mlflow ui --backend-store-uri {uri} --port 5000"
        base = "http://127.0.0.1:5000"
    else:
        how, base = "(tracking server)", uri.rstrip("/")
    page = f"runs/{run_id}" if single else "runs?workflowType=machine_learning"
    return (f"Runs are in {uri}, {'run' if single else 'sweep'} {run_id}.\n"
            f"Open the MLflow UI: {how}\n"
            f"  then {base}/#/experiments/{experiment_id}/{page}")


def store_error() -> type[Exception]:
    """MLflow's exception class (MlflowException), for the layers above that catch what the
    store refuses without importing MLflow themselves."""
    from mlflow.exceptions import MlflowException

    return MlflowException
