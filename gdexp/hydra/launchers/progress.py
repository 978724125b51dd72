"""A progress bar for sweeps that stays out of the way when output is not a terminal."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from gdexp.core.outcomes import DIVERGED, FAILED


@contextmanager
def progress(total: int):
    """Yields a bar whose update(summary) counts one job, and diverged ones."""
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a TTY (CI, pipes, files).
    with tqdm(total=total, unit="run", desc="gdexp", file=sys.stderr, disable=None,
              dynamic_ncols=True, leave=False) as bar:
        yield _Bar(bar)


class _Bar:
    def __init__(self, bar):
        self._bar, self._diverged, self._failed = bar, 0, 0

    def update(self, summary: dict) -> None:
        self._diverged += summary.get("status") == DIVERGED
        self._failed += summary.get("status") == FAILED
        self._bar.set_postfix(diverged=self._diverged, failed=self._failed, refresh=False)
        self._bar.update(1)
