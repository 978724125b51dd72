"""A progress bar over a sweep's descent (or a single run's) that stays out of the way when output is
not a terminal.

It counts steps of the runs' budgets (stopping.maxiter each; a run that stops early counts
its whole budget done, so the bar ends full and tqdm's estimate of the time left is an upper
bound), and shows the runs still descending, the diverged and failed ones so far and the runs
recorded:

    gdexp:  41%|████      | 8.20M/20.0M [00:12<00:17, 683kstep/s, diverged=3, failed=0, recorded=0/20, running=12]
"""
from __future__ import annotations

import math

import sys
import time
from contextlib import contextmanager

import numpy as np

from gdexp.core.outcomes import FAILED

REFRESH_S = 0.25  # the descent callback looks at the batch no more often than this


@contextmanager
def progress(budgets: list[int]):
    """Yields a bar over runs with these step budgets: `update(row)` counts one run recorded,
    `watch(rows)` gives the descent callback of a batch of them (gdexp.specs.batch.chunks)."""
    if not budgets or not sys.stderr.isatty():  # CI, pipes, files: no bar, not even tqdm's import
        yield _Bar(None, np.asarray(budgets, dtype=np.int64))
        return
    from tqdm import tqdm

    # disable=None: tqdm's own check of the terminal, as above.
    with tqdm(total=int(sum(budgets)), unit="step", unit_scale=True, desc="gdexp", file=sys.stderr, disable=None,
              dynamic_ncols=True, leave=False, mininterval=REFRESH_S) as bar:
        yield _Bar(bar, np.asarray(budgets, dtype=np.int64))


class _Bar:
    def __init__(self, bar, budgets: np.ndarray):
        self._bar, self._budgets = bar, budgets
        self._off = bar is None or bool(bar.disable)
        self._closed = 0           # steps of the batches that ended
        self._diverged = 0         # runs of those batches that diverged
        self._running = self._batch_diverged = self._failed = self._recorded = 0
        self._shown = 0.0

    def update(self, summary: dict) -> None:
        """One run recorded (its summary row)."""
        self._failed += summary.get("status") == FAILED
        self._recorded += 1
        if self._recorded == len(self._budgets) or time.monotonic() - self._shown >= REFRESH_S:
            self._show()

    def watch(self, rows: list[int]):
        """The descent callback of the batch of `rows` (indices into the budgets); None when off."""
        if self._off:
            return None
        budgets = self._budgets[rows]
        last = [0.0]

        def callback(progress) -> None:
            now = time.monotonic()
            if progress.running and now - last[0] < REFRESH_S:
                return
            last[0] = now
            stopped = progress.stopped
            done = int(np.where(stopped, budgets, progress.step).sum())
            diverged = int(progress.diverged.sum())
            if progress.running:
                self._running, self._batch_diverged = progress.running, diverged
                self._bar.n = min(self._closed + done, _below_100(self._bar.total))
            else:  # the batch's last block
                self._closed += done
                self._diverged += diverged
                self._running = self._batch_diverged = 0
                self._bar.n = min(self._closed, self._bar.total)
            self._show()

        return callback

    def _show(self) -> None:
        if self._off:
            return
        self._shown = time.monotonic()
        self._bar.set_postfix(running=self._running, diverged=self._diverged + self._batch_diverged,
                              failed=self._failed, recorded=f"{self._recorded}/{len(self._budgets)}",
                              refresh=False)
        self._bar.refresh()


def _below_100(total: int) -> int:
    """The most steps a bar still running may show: tqdm rounds its percentage (99.7% reads
    "100%"), and a sweep with a run descending is not done.

    >>> _below_100(340_000), round(100 * _below_100(340_000) / 340_000)
    (338299, 99)
    """
    return max(0, math.ceil(0.995 * total) - 1)
