"""lr_find: the largest stable learning rate, found by search instead of read off a grid.

Bracket the boundary between a learning rate that stays stable and one that
diverges (stepping by `factor` from `start`), then bisect the bracket on a log
scale until its ends are within `rtol` of each other. Each probe is one job
of the sweep, so one MLflow child run, recorded like any other.

The answer is the parent's `max_stable_lr` (the largest probe that did not
diverge, the name a grid sweep's summary uses too) with the final bracket
[`max_stable_lr`, `min_diverged_lr`].
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from hydra.core.override_parser.types import Override

from gdexp.core.errors import ConfigError
from gdexp.core.outcomes import DESCENT_STATUSES, DIVERGED
from gdexp.hydra.grids import clean
from gdexp.hydra.sweepers.search import Outcome, SearchSweeper, fixed_line

log = logging.getLogger(__name__)

LR = "optimizer.lr"
# Deprecated parent metrics of gdexp 0.1 -> their names now.
_RENAMED = {"lr_found": "max_stable_lr", "lr_found_lo": "max_stable_lr", "lr_found_hi": "min_diverged_lr"}
_FINEST_RTOL = 1e-9  # probes are written with 12 significant digits; no finer bisection is real


@dataclass(frozen=True)
class Bracket:
    """Where a search ended: lo stayed stable, hi diverged (None: no such probe yet)."""

    lo: float | None
    hi: float | None
    probes: int

    def within(self, rtol: float) -> bool:
        """Both ends found, and hi / lo <= 1 + rtol."""
        return self.lo is not None and self.hi is not None and self.hi <= self.lo * (1 + rtol)


def find_boundary(is_stable: Callable[[float], bool | None], start: float, factor: float,
                  rtol: float, max_probes: int) -> Bracket:
    """Bracket the largest stable learning rate, then bisect it on a log scale.

    Steps up by `factor` from a stable start (down from a diverging one) until
    the outcome flips, then probes the geometric mean of the bracket until
    hi / lo <= 1 + rtol. Assumes the stable learning rates form an interval
    (0, boundary], true for gradient descent on a convex quadratic.

    Args:
        is_stable: runs a probe at lr: True or False, or None when it cannot
            tell (its job failed), which ends the search.
        start, factor, rtol, max_probes: as in LrFindSweeper.

    Returns:
        The last bracket; check `within(rtol)`: max_probes may run out first.

    >>> find_boundary(lambda lr: lr <= 0.04, 1e-3, 10, 0.01, 30)
    Bracket(lo=0.0399542055896, hi=0.0403151936287, probes=11)
    """
    lo = hi = None
    lr = float(clean(start))
    for probe in range(1, max_probes + 1):
        stable = is_stable(lr)
        if stable is None:
            return Bracket(lo, hi, probe)
        if stable:
            lo = lr
        else:
            hi = lr
        bracket = Bracket(lo, hi, probe)
        if bracket.within(rtol):
            return bracket
        if hi is None:
            lr = float(clean(lr * factor))
        elif lo is None:
            lr = float(clean(lr / factor))
        else:
            lr = float(clean(math.sqrt(lo * hi)))
    return Bracket(lo, hi, max_probes)


class LrFindSweeper(SearchSweeper):
    """The largest stable learning rate of one configuration (hydra/sweeper=lr_find).

    A probe is stable unless its run diverged: 'converged' and 'max_iters' both
    count as stable. So the iteration budget decides what "stable" means. Just
    above the limit, e.g. GD on a quadratic at lr = (2/lambda_max)(1 + d), the
    top eigen-component grows only by a factor (1 + 2d) per step, and the run
    is flagged diverged only once its loss passes divergence_factor times the
    initial loss: after about ln(divergence_factor * f0 / f0_top) / (4 d) steps
    (f0_top: the part of the initial loss along that eigenvector). A budget of
    T steps therefore cannot see instability with d below about that log / (4T),
    and the boundary found sits that far above the true one. With tol or
    patience on, such a run can even stop as 'converged' while its unstable
    component is still small. sweeps/lr_find.yaml turns both off and gives a
    budget that makes this bias far smaller than rtol.

    Args:
        start: the first learning rate probed.
        factor: step between probes while bracketing (> 1).
        rtol: the search stops once hi / lo <= 1 + rtol.
        max_probes: probes at most; a search that has not bracketed the
            boundary to rtol by then fails (exit status 1, parent FAILED).
        params: fixed overrides for every probe, as `key: value`.
    """

    def __init__(self, start: float = 1e-3, factor: float = 10.0, rtol: float = 0.01,
                 max_probes: int = 30, params: Optional[Dict[str, str]] = None) -> None:
        super().__init__(params)
        self.start, self.factor, self.rtol, self.max_probes = start, factor, rtol, max_probes

    def _prepare(self, overrides: List[Override]) -> tuple[List[str], List[List[str]]]:
        checks = [("start", self.start, math.isfinite(self.start) and self.start > 0, "must be finite and > 0"),
                  ("factor", self.factor, math.isfinite(self.factor) and self.factor > 1, "must be finite and > 1"),
                  ("rtol", self.rtol, self.rtol >= _FINEST_RTOL, f"must be >= {_FINEST_RTOL:g}"),
                  ("max_probes", self.max_probes, self.max_probes >= 2, "must be >= 2")]
        for key, value, ok, reason in checks:
            if not ok:
                raise ConfigError(f"hydra.sweeper.{key}", value, reason)
        fixed = []
        for o in overrides:
            line = fixed_line(o)
            value = o.input_line.split("=", 1)[1]
            as_typed = re.fullmatch(r"choice\(([^,]*)\)", value)  # one value, deferred by gdexp's argv
            value = as_typed.group(1) if as_typed else value
            if o.key_or_group == LR:
                raise ConfigError(LR, value, "lr_find chooses the learning rate itself: leave it out (its first "
                                  "probe is hydra.sweeper.start, e.g. hydra.sweeper.start=0.1)")
            if line is None:
                raise ConfigError(o.key_or_group, value, "lr_find runs one configuration: give one value per key")
            fixed.append(line)
        return fixed, [[*fixed, f"{LR}={clean(self.start)}"]]

    def _search(self, fixed: List[str]) -> Outcome:
        def is_stable(lr: float) -> bool | None:
            (row,) = self._launch([[*fixed, f"{LR}={clean(lr)}"]])
            n, status = len(self.rows), row["status"]
            log.info(f"lr_find probe {n}: {LR}={clean(lr)} {status}")
            if status not in DESCENT_STATUSES:  # 'failed': no descent result to judge
                log.warning(f"gdexp: lr_find: probe {n} ({LR}={clean(lr)}) ended {status}, so it cannot "
                            "tell stable from diverged: the search stops")
                return None
            return status != DIVERGED

        bracket = find_boundary(is_stable, self.start, self.factor, self.rtol, self.max_probes)
        metrics = {"max_stable_lr": bracket.lo, "min_diverged_lr": bracket.hi, "probes": bracket.probes}
        metrics = {k: v for k, v in metrics.items() if v is not None}
        # The names of gdexp 0.1, logged for one more release (scripts may read them).
        metrics.update({old: metrics[new] for old, new in _RENAMED.items() if new in metrics})
        settings = {"start": self.start, "factor": self.factor, "rtol": self.rtol, "max_probes": self.max_probes}
        return Outcome(metrics, params={f"lr_find.{k}": v for k, v in settings.items()},
                       report=["lr_find: " + ", ".join(f"{k}={v:g}" for k, v in metrics.items()
                                                       if k not in _RENAMED)],
                       error=None if bracket.within(self.rtol) else _why_not(bracket, self.rtol))


def _why_not(bracket: Bracket, rtol: float) -> str:
    n = bracket.probes
    if bracket.hi is None and bracket.lo is not None:
        return (f"no bracket in {n} probes: every probe up to {LR}={bracket.lo:g} stayed stable "
                "(raise hydra.sweeper.start or hydra.sweeper.max_probes)")
    if bracket.lo is None and bracket.hi is not None:
        return (f"no bracket in {n} probes: every probe down to {LR}={bracket.hi:g} diverged "
                "(lower hydra.sweeper.start or raise hydra.sweeper.max_probes)")
    if bracket.lo is None:
        return "the search stopped before any probe finished"
    return (f"the bracket [{bracket.lo:g}, {bracket.hi:g}] is still wider than rtol={rtol:g} "
            f"after {n} probes (raise hydra.sweeper.max_probes)")
