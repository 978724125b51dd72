"""How gdexp writes to a store: each write whole, a locked store waited for, the runs it opened known.

A signal that lands inside MLflow's SQLAlchemy session leaves its SQLite transaction
open (issue 15): every write through `GuardedClient` runs under
`interrupts.deferred()`, so Ctrl-C and SIGTERM wait for it to end. A store another
process holds locked (a long write, `BEGIN EXCLUSIVE`) is tried again with backoff
up to LOCK_WAIT_S, saying so once, instead of failing with a page of SQLAlchemy
traceback. The runs this process created and has not closed are known, so an
interrupt that lands between two writes still leaves none RUNNING
(`close_open_runs`). Nothing here imports MLflow.
"""
from __future__ import annotations

import functools
import logging
import time

from gdexp.tracking import interrupts
from gdexp.tracking.uris import sqlite_path

log = logging.getLogger(__name__)

# How long gdexp waits for a store another process holds locked (a SQLite file inside a
# long write or `BEGIN EXCLUSIVE`), on top of SQLite's own wait, before giving up on it:
# at the start, one line and nothing run; during a sweep, the run is kept on disk for
# `gdexp resume`, as when a tracking server stops answering (README, Faults).
# GDEXP_LOCK_WAIT_S (env.LOCK_WAIT) sets another bound: lock_wait_s().
LOCK_WAIT_S = 120.0
MLFLOW_BUSY_S = 20.0  # SQLite's busy timeout in MLflow's own sessions: its client waits that long per statement
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)  # between tries; then the last one, until LOCK_WAIT_S

# The client's methods that write: run under interrupts.deferred(), never cut in half.
_WRITES = frozenset({"create_experiment", "create_run", "log_batch", "log_metric", "log_param", "set_tag",
                     "delete_tag", "set_terminated", "update_run", "log_artifact", "log_artifacts",
                     "delete_run", "restore_run", "log_inputs", "log_outputs"})


class StoreLocked(TimeoutError):
    """The store stayed locked by another process for LOCK_WAIT_S (a TimeoutError: `unreachable`)."""


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
_open_runs: dict[str, "GuardedClient"] = {}  # or another object with set_terminated (note_open)
_created = [0]  # runs this process created, ever: whether an interrupt found one in flight


def runs_created() -> int:
    """How many runs this process has created so far (through the guarded client)."""
    return _created[0]


def _follow(cl: GuardedClient, name: str, args, kwargs, out) -> None:
    if name == "create_run":
        _open_runs[out.info.run_id] = cl
        _created[0] += 1
    elif name == "update_run" and kwargs.get("status", args[1] if len(args) > 1 else None) == "RUNNING":
        _open_runs[kwargs.get("run_id", args[0] if args else None)] = cl
    elif name == "set_terminated":
        _open_runs.pop(kwargs.get("run_id", args[0] if args else None), None)


def note_open(run_id: str, closer) -> None:
    """A run this process created by other means than the guarded client (gdexp.tracking.record's
    fast path): `closer.set_terminated(run_id, status=...)` closes it if an interrupt comes first."""
    _open_runs[run_id] = closer
    _created[0] += 1


def forget_open(run_id: str) -> None:
    """The run was closed."""
    _open_runs.pop(run_id, None)


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


def lock_wait_s() -> float:
    """The bound on waiting for a locked store, in seconds: GDEXP_LOCK_WAIT_S when set (a number
    >= 0), else LOCK_WAIT_S (120).

    Raises:
        ConfigError: GDEXP_LOCK_WAIT_S is not a number >= 0.
    """
    import math

    from gdexp.core.errors import ConfigError
    from gdexp.tracking.env import LOCK_WAIT, get

    given = get(LOCK_WAIT)
    if given is None:
        return LOCK_WAIT_S
    try:
        value = float(given)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(LOCK_WAIT, given, "must be a number of seconds >= 0")
    return value


def wait_unlocked(attempt, uri: str):
    """attempt(), tried again with backoff while the store is locked by another process, up to
    lock_wait_s(); then StoreLocked."""
    deadline, tries, bound = None, 0, lock_wait_s()
    if held_at_first_look(uri):  # said now, not after SQLite's busy timeout inside attempt()
        deadline = time.monotonic() + bound
        log.warning(_waiting(bound, uri))
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not locked(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + bound
                log.warning(_waiting(bound, uri))
            if now >= deadline:
                raise StoreLocked(f"the store stayed locked by another process for {bound:g} s "
                                  f"(GDEXP_LOCK_WAIT_S sets the bound); find the process holding "
                                  f"{sqlite_path(uri) or uri} and run again") from None
            time.sleep(min(_BACKOFF_S[min(tries, len(_BACKOFF_S) - 1)], max(deadline - now, 0.0)))
            tries += 1


def _waiting(bound: float, uri: str) -> str:
    return f"gdexp: store locked by another process; waiting (up to {bound:g} s): {uri}"


# The stores this process has looked at once (held_at_first_look), and how long a lock found then
# must last to be said at once.
_LOOKED: set[str] = set()
SAY_AFTER_S = 1.0


def held_at_first_look(uri: str) -> bool:
    """Whether another process holds the SQLite store at `uri` locked for SAY_AFTER_S as this
    process first asks it something (once per store and process; False for other stores).

    The first statement would wait SQLite's busy timeout (MLflow's 20 s) before failing, and only
    then could gdexp say why nothing happens; looked at first, the wait is said after a second.
    A lock shorter than that (another process's write) goes unsaid.
    """
    if uri in _LOOKED:
        return False
    _LOOKED.add(uri)
    path = sqlite_path(uri)
    return path is not None and path.is_file() and not _write_lock_free(path, SAY_AFTER_S)


def _write_lock_free(path, seconds: float) -> bool:
    """Whether SQLite's write lock on the database file `path` could be taken (and was given back at
    once) within `seconds`; True for what is not a lock (a read-only file: nothing to wait for)."""
    import sqlite3

    try:  # mode=rw: a file removed meanwhile is not created
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=seconds,
                               isolation_level=None)
    except sqlite3.Error:
        return True
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.Error as exc:  # a file that is no database is not locked: its reader says what it is
        return not locked(exc)
    finally:
        conn.close()


def wait_writable(uri: str, seconds: float = MLFLOW_BUSY_S) -> None:
    """Wait, up to `seconds` (MLflow's own SQLite sessions wait MLFLOW_BUSY_S), until no other process
    holds the SQLite store at `uri` locked; at once for any other store.

    For the writes that close a sweep whose store did not take its runs within lock_wait_s():
    its parent is still closed (KILLED, tagged) when the lock ends soon after, as MLflow's
    client closed it.

    Raises:
        StoreLocked: still locked after `seconds`.
    """
    path = sqlite_path(uri)
    if path is not None and path.exists() and not _write_lock_free(path, seconds):
        raise StoreLocked(f"the store stayed locked by another process for {seconds:g} s")


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
