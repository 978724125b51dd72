"""Which steps of a long curve go to MLflow, so its shape survives."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def sample_steps(loss: np.ndarray, k: int, keep: Iterable[int] = ()) -> np.ndarray:
    """Pick at most k step indices of a curve, sorted, to stand for all of it.

    Every step is kept while the curve has at most k. Otherwise, in priority
    order: the steps in `keep` (best, divergence), the first and last, a
    log-spaced quarter for the fast early dynamics, then the lowest and highest
    loss of equal-width buckets so a one-step spike or an oscillation's
    envelope survives, then evenly spaced steps to fill up to exactly k.

    >>> sample_steps(np.arange(5.0), 10).tolist()
    [0, 1, 2, 3, 4]
    >>> s = sample_steps(np.r_[np.ones(5000), 1e6, np.ones(4999)], 100)
    >>> len(s), 5000 in s, int(s[0]), int(s[-1])
    (100, True, 0, 9999)
    """
    n = len(loss)
    if n <= k:
        return np.arange(n)
    must = np.array([*keep, 0, n - 1], dtype=np.int64)
    early = np.geomspace(1, n - 1, max(k // 4, 1)).astype(np.int64)
    buckets = max((k - len(must) - len(early)) // 2, 1)
    width = -(-n // buckets)
    padded = np.full(buckets * width, np.nan)
    padded[:n] = np.where(np.isfinite(loss), loss, np.nan)
    grid = padded.reshape(buckets, width)
    offsets = np.arange(buckets) * width
    with np.errstate(invalid="ignore"):
        valid = ~np.isnan(grid).all(axis=1)  # a bucket past the end or all non-finite
        lows = offsets[valid] + np.nanargmin(grid[valid], axis=1)
        highs = offsets[valid] + np.nanargmax(grid[valid], axis=1)
    fill = np.linspace(0, n - 1, k).astype(np.int64)
    ranked = np.concatenate([must, early, lows, highs, fill])
    _, first = np.unique(ranked, return_index=True)
    chosen = ranked[np.sort(first)][:k]
    return np.sort(chosen)
