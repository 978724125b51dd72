"""Where runs go: the tracking URI, the MLflow client, the experiment, and a safe first creation.

Runs are written through MlflowClient, never the fluent API: no process-wide
"active run" to collide with, and a parent run can be made in the launching
process while its jobs run in the same one. The client `client()` returns is
guarded: its writes are never cut in half by Ctrl-C or SIGTERM
(gdexp.tracking.interrupts), and a store another process holds locked is
waited for, with backoff, up to LOCK_WAIT_S.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import sys
import time
from pathlib import Path

from gdexp.core.errors import ConfigError
from gdexp.tracking import env, interrupts
from gdexp.tracking.guards import check_store_filesystem, check_store_uri, check_writable, sqlite_path

# How long gdexp waits for a store another process holds locked (a SQLite file inside a
# long write or `BEGIN EXCLUSIVE`), on top of SQLite's own wait, before giving up on it:
# at the start, one line and nothing run; during a sweep, the run is kept on disk for
# `gdexp resume`, as when a tracking server stops answering (README, Faults).
LOCK_WAIT_S = 120.0
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)  # between tries; then the last one, until LOCK_WAIT_S

# The client's methods that write: run under interrupts.deferred(), never cut in half.
_WRITES = frozenset({"create_experiment", "create_run", "log_batch", "log_metric", "log_param", "set_tag",
                     "delete_tag", "set_terminated", "update_run", "log_artifact", "log_artifacts",
                     "delete_run", "restore_run", "log_inputs", "log_outputs"})


class StoreLocked(TimeoutError):
    """The store stayed locked by another process for LOCK_WAIT_S (a TimeoutError: `unreachable`)."""


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

    Raises:
        ConfigError: the store stayed locked by another process for LOCK_WAIT_S.
    """
    env.http_client_defaults(uri)
    _quiet_lock_errors()
    try:
        return GuardedClient(wait_unlocked(functools.partial(_open, uri), uri))
    except StoreLocked as exc:
        raise ConfigError("tracking.uri", uri, str(exc)) from None


def _open(uri: str):
    from mlflow import MlflowClient

    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri)
    from filelock import FileLock

    with FileLock(f"{path}.lock"), interrupts.deferred():  # a migration is never cut in half either
        cl = MlflowClient(tracking_uri=uri)
        cl._tracking_client.store  # noqa: B018 - opens (creates, migrates) the store under the lock
    return cl


class GuardedClient:
    """An MlflowClient whose writes run whole (interrupts held until they end) and whose calls
    wait out a store locked by another process (up to LOCK_WAIT_S, then StoreLocked).
    Everything else is the client's own."""

    def __init__(self, cl):
        self._client = cl

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr
        uri = self._client.tracking_uri

        def call(*args, **kwargs):
            if name not in _WRITES:
                return wait_unlocked(functools.partial(attr, *args, **kwargs), uri)
            return wait_unlocked(functools.partial(_whole, self, name, attr, *args, **kwargs), uri)

        return call


# The runs this process opened and has not closed: an interrupt that lands between two writes
# (after a run's creation, before the code that closes it) still leaves none RUNNING.
_open_runs: dict[str, GuardedClient] = {}


def _follow(cl: GuardedClient, name: str, args, kwargs, out) -> None:
    if name == "create_run":
        _open_runs[out.info.run_id] = cl
    elif name == "update_run" and kwargs.get("status", args[1] if len(args) > 1 else None) == "RUNNING":
        _open_runs[kwargs.get("run_id", args[0] if args else None)] = cl
    elif name == "set_terminated":
        _open_runs.pop(kwargs.get("run_id", args[0] if args else None), None)


def close_open_runs(status: str = "KILLED") -> int:
    """Close every run this process opened and did not close (after Ctrl-C or SIGTERM); returns how
    many. A store that does not answer is left as it is (gdexp resume closes them later)."""
    closed = 0
    for run_id, cl in list(_open_runs.items()):
        try:
            cl.set_terminated(run_id, status=status)
            closed += 1
        except Exception:  # noqa: BLE001 - best effort on the way out
            _open_runs.pop(run_id, None)
    return closed


def _whole(cl: "GuardedClient", name: str, method, *args, **kwargs):
    with interrupts.deferred():
        out = method(*args, **kwargs)
        _follow(cl, name, args, kwargs, out)  # before a held interrupt is delivered
        return out


def wait_unlocked(attempt, uri: str):
    """attempt(), tried again with backoff while the store is locked by another process."""
    deadline, tries = None, 0
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not locked(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + LOCK_WAIT_S
                print(f"gdexp: store locked by another process; waiting (up to {LOCK_WAIT_S:g} s): {uri}",
                      file=sys.stderr)
            if now >= deadline:
                raise StoreLocked(f"the store stayed locked by another process for {LOCK_WAIT_S:g} s "
                                  f"(gdexp.tracking.store.LOCK_WAIT_S); find the process holding "
                                  f"{sqlite_path(uri) or uri} and run again") from None
            time.sleep(min(_BACKOFF_S[min(tries, len(_BACKOFF_S) - 1)], max(deadline - now, 0.0)))
            tries += 1


def locked(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is SQLite's "database is locked" (or "busy")."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(getattr(exc, "message", None) or exc)
        if "database is locked" in text or "database table is locked" in text or "database is busy" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _NotLocked(logging.Filter):
    # MLflow logs every SQLAlchemy error it catches with its traceback; a lock gdexp waits out is not one.
    def filter(self, record: logging.LogRecord) -> bool:
        return "database is locked" not in record.getMessage()


@functools.cache
def _quiet_lock_errors() -> None:
    logging.getLogger("mlflow.store.db.utils").addFilter(_NotLocked())


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` means the store could not be reached (after the client's retries).

    MLflow wraps a refused connection, a timeout or too many 5xx answers in an
    MlflowException "API request to ... failed ..."; the requests error is its context.
    """
    import requests

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        # TimeoutError: StoreLocked too, a store locked past LOCK_WAIT_S
        if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        message = getattr(exc, "message", None) or str(exc)
        if type(exc).__name__ == "MlflowException" and message.startswith("API request to ") and " failed " in message:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def experiment_id(cl, name: str) -> str:
    """The id of experiment `name`, created on first use.

    On a SQLite store its artifacts go beside the database file
    (<db folder>/mlartifacts/<name>), not into ./mlruns of whatever folder
    the first run happened to start in.
    """
    found = cl.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    path = sqlite_path(cl.tracking_uri)
    if path is not None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        location = (path.parent / "mlartifacts" / slug).as_uri()
    try:
        return cl.create_experiment(name, artifact_location=location)
    except Exception:
        # Another process created it between our look-up and create.
        found = cl.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class Store:
    """An MLflow store and the experiment runs are written to; one per (uri, experiment) and process.

    Attributes:
        uri: the resolved tracking URI.
        experiment: the experiment's name.
        client: its MlflowClient.
        down: the error that showed the store not answering, once it has (then
            this process stops asking it: runs are kept on disk instead).
    """

    def __init__(self, uri: str, experiment: str):
        self.uri, self.experiment = uri, experiment
        self.client = client(uri)
        self._experiment_id: str | None = None
        self.down: BaseException | None = None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = experiment_id(self.client, self.experiment)
        return self._experiment_id


def check_artifacts_writable(cl, exp_id: str) -> None:
    """Refuse an experiment whose artifact folder (a local one) cannot be written: else every
    run would descend first and then fail on its files."""
    from gdexp.tracking.record import local_dir

    location = cl.get_experiment(exp_id).artifact_location
    folder = local_dir(location)
    reason = None if folder is None else check_writable(folder)
    if reason:
        raise ConfigError("tracking.uri", cl.tracking_uri, f"the artifact folder {folder} is not writable "
                          f"({reason}); fix its permissions or use another store")


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
        check_artifacts_writable(store.client, store.experiment_id)
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
