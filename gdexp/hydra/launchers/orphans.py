"""A worker process whose sweep is gone stops, without writing (issue 20).

joblib's loky workers (and any launcher's worker the sweep's process started itself) outlive a
sweep killed with kill -9: nothing tells them, and they go on descending and recording runs
into a sweep that no process will close. A job of such a worker calls `stop_with_sweep()`
first: on Linux the kernel then sends the worker SIGKILL when the sweep's process dies
(prctl PR_SET_PDEATHSIG), and on every platform a thread of the worker checks its parent
twice a second and ends the process (os._exit: no cleanup, no write) once it is gone.
A worker of another process (Ray's, SLURM's) is left alone: its parent is not the sweep.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from gdexp.tracking import env

CHECK_EVERY_S = 0.5     # how soon a worker notices without the parent-death signal
ORPHAN_EXIT = 128 + signal.SIGKILL  # the status a worker ends with: killed, as its sweep was

_watched: list[int] = []  # the sweep pid this process watches (once a process)


def stop_with_sweep() -> bool:
    """In a worker process the sweep's process started: end this process when the sweep's
    process ends. Returns whether this process is such a worker (and now watched).

    The sweep's pid comes from the environment (env.SWEEP_PID, set by the sweep); a process
    whose parent is another one (the sweep itself, a Ray or SLURM worker) is not watched.
    """
    given = env.get(env.SWEEP_PID)
    if given is None or _watched:
        return bool(_watched)
    sweep = int(given)
    if sweep == os.getpid() or os.getppid() != sweep:
        return False
    _watched.append(sweep)
    _parent_death_signal()
    if os.getppid() != sweep:  # it died before the signal was asked for
        os._exit(ORPHAN_EXIT)
    threading.Thread(target=_watch, args=(sweep,), name="gdexp-sweep-watch", daemon=True).start()
    return True


def _watch(sweep: int) -> None:
    while os.getppid() == sweep:
        time.sleep(CHECK_EVERY_S)
    os._exit(ORPHAN_EXIT)  # the sweep is gone: no run of this worker is recorded after it


def _parent_death_signal() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) on Linux; nothing elsewhere (the watch thread remains)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl: the watch thread does it
