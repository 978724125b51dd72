"""Will it fit? Memory and disk a run needs, against what the machine has, checked before it starts.

A sweep descends chunk by chunk (gdexp.specs.batch.chunks), so its memory is that
of one chunk however many runs it has; what must fit is the largest single run.
Disk is the sum of every run's curve.parquet. Estimates are upper bounds (a run
that stops early writes less), stated as such in the errors.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from gdexp.core.errors import ConfigError

# Of the memory the machine has free, what one run may take: the rest is for Python,
# MLflow and the chunk being recorded.
MEMORY_SHARE = 0.7


def available_memory() -> int | None:
    """Bytes the machine can give without swapping (Linux' MemAvailable; None elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def free_disk(folder: str | os.PathLike) -> int | None:
    """Free bytes on the filesystem of `folder` (its nearest existing parent)."""
    path = Path(folder).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def point_bytes(dim: int) -> int:
    """Bytes a run holds per point of `dim` float64 parameters: the point, its gradient, an
    optimizer's state (Adam: two moments) and the best point, about six copies."""
    return 6 * 8 * dim


def check_memory(key: str, value, nbytes: float, what: str, available: int | None = None) -> None:
    """Refuse, naming `key`, what would hold more than MEMORY_SHARE of the available memory.

    Args:
        key, value: the config key whose value sets the size, for the error line.
        nbytes: the estimate, in bytes (an upper bound).
        what: what takes it, e.g. "the synthetic data".

    Raises:
        ConfigError: nbytes > MEMORY_SHARE x the available memory (Linux' MemAvailable; nothing
            is checked where that is unknown).

    >>> check_memory("loss.n", 10**12, 8e12, "the synthetic data", available=16 * 10**9)
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: loss.n=1000000000000: the synthetic data needs ~8 TB of memory; 16 GB are available
    """
    available = available_memory() if available is None else available
    if available is not None and nbytes > MEMORY_SHARE * available:
        raise ConfigError(key, value, f"{what} needs ~{_size(nbytes)} of memory; {_size(available)} are available")


def check_run_memory(run_bytes: int, maxiter: int, available: int | None = None) -> None:
    """Refuse a run whose curves cannot be held in memory, naming stopping.maxiter.

    Raises:
        ConfigError: run_bytes > MEMORY_SHARE x the available memory.

    >>> check_run_memory(8 * 10**12, 10**12, available=16 * 10**9)
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: stopping.maxiter=1000000000000: a run this long records 8 TB of curves in memory; 16 GB are available: at most ~1.4e+09 steps fit
    """
    available = available_memory() if available is None else available
    if available is None or run_bytes <= MEMORY_SHARE * available:
        return
    fits = int(MEMORY_SHARE * available / max(run_bytes / max(maxiter, 1), 1))
    raise ConfigError("stopping.maxiter", maxiter,
                      f"a run this long records {_size(run_bytes)} of curves in memory; {_size(available)} are "
                      f"available: at most ~{fits:.2g} steps fit")


def check_disk(total_bytes: int, folder: str | os.PathLike, runs: int, maxiter: int) -> None:
    """Refuse a sweep whose curve files cannot fit on the disk that holds them.

    Args:
        total_bytes: the runs' curve.parquet files together, an upper bound (RunSpec.curve_bytes).
        folder: where they go (the experiment's artifact folder, a local one).
        runs, maxiter: the sweep's runs and its largest stopping.maxiter, for the error line.

    Raises:
        ConfigError: total_bytes > the free space at `folder`, saying how to split the sweep.

    >>> check_disk(10**15, "/", 1000, 10**9)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: stopping.maxiter=1000000000: the sweep's 1000 runs may write up to 1 PB of curves (curve.parquet at every step), and / has ... free: split the grid into ... sweeps or more, or lower stopping.maxiter
    """
    free = free_disk(folder)
    if free is None or total_bytes <= free:
        return
    parts = -(-total_bytes // max(free, 1))
    raise ConfigError("stopping.maxiter", maxiter,
                      f"the sweep's {runs} runs may write up to {_size(total_bytes)} of curves (curve.parquet at "
                      f"every step), and {folder} has {_size(free)} free: split the grid into {parts} sweeps or "
                      f"more, or lower stopping.maxiter")


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    return f"{nbytes:.3g} PB"
