"""Ctrl-C and SIGTERM: one way to stop, and never in the middle of a store write.

A signal that lands inside MLflow's SQLAlchemy session leaves its SQLite
transaction open: every later write then waits out the busy timeout and fails,
and the runs stay RUNNING. So every write to the store runs under `deferred()`:
SIGINT and SIGTERM received during it are held and delivered when it ends,
between writes. `handled()` (the `gdexp` command installs it) makes SIGTERM
stop gdexp as Ctrl-C does, raising `Interrupted`, a KeyboardInterrupt, so the
run in flight and its sweep are closed KILLED; the process then exits with
128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as a shell does.

Signal handlers can only be set from the main thread: elsewhere both are no-ops.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised between store writes.

    >>> Interrupted(signal.SIGTERM).exit_status
    143
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def exit_status(exc: KeyboardInterrupt) -> int:
    """The exit status for an interrupt: 128 + its signal (a plain KeyboardInterrupt is SIGINT's, 130)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def name(exc: KeyboardInterrupt) -> str:
    """The interrupt's signal name: SIGINT (Ctrl-C) or SIGTERM."""
    return signal.Signals(getattr(exc, "signum", signal.SIGINT)).name


def _raise(signum, frame):
    raise Interrupted(signum)


@contextmanager
def handled():
    """For the block: SIGINT and SIGTERM raise `Interrupted`; the previous handlers are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_depth = 0  # nesting of deferred() blocks in the main thread


@contextmanager
def deferred():
    """Hold SIGINT and SIGTERM for the block (a store write); deliver the first one after it.

    The held signal goes to the handler that was there before (gdexp's, Python's
    KeyboardInterrupt, or the default action), right after the block, so an
    interrupted sweep stops between two writes, never inside one. Nested blocks
    hold until the outermost ends.
    """
    global _depth
    if _depth or threading.current_thread() is not threading.main_thread():
        _depth += threading.current_thread() is threading.main_thread()
        try:
            yield
        finally:
            _depth -= threading.current_thread() is threading.main_thread()
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in SIGNALS}
    _depth = 1
    try:
        yield
    finally:
        _depth = 0
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            _deliver(held[0], previous[held[0]])


def _deliver(signum: int, handler) -> None:
    if callable(handler):
        handler(signum, None)  # raises here, synchronously (Python's or gdexp's handler)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # the default action: end the process
    # SIG_IGN: the process ignores it, as it would have
