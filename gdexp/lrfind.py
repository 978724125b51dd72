"""lr_find: the largest stable learning rate, found by search instead of read off a grid.

Bracket the boundary between a learning rate that stays stable and one that
diverges (stepping by `factor` from `start`), then bisect the bracket on a log
scale until its ends are within `rtol` of each other. Each probe is one job
of the sweep, so one MLflow child run, recorded like any other.

SearchSweeper, the base of lr_find and of gdexp/optuna_sweeper.py, holds what
a sweeper that picks each job from the results so far needs around its jobs.
"""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from gdexp import tracking
from gdexp.app import FAILED
from gdexp.core.outcomes import DESCENT_STATUSES, DIVERGED
from gdexp.core.errors import ConfigError
from gdexp.grids import clean
from gdexp.sweeprun import sweep_run

log = logging.getLogger(__name__)

LR = "optimizer.lr"
_FINEST_RTOL = 1e-9  # probes are written with 12 significant digits; no finer bisection is real


@dataclass
class Outcome:
    """What a search ends with: results for the parent run, lines to print, an error if no answer."""

    metrics: Dict[str, float]
    params: Dict[str, Any] = field(default_factory=dict)
    tags: Dict[str, str] = field(default_factory=dict)
    report: List[str] = field(default_factory=list)
    error: Optional[str] = None


class SearchSweeper(Sweeper):
    """A sweeper whose next jobs depend on the results so far.

    Like gdexp's GridSweeper, every job is a child of one parent run (gdexp.sweeprun)
    with the usual summary table and counts, and bad input fails before any
    run exists. Subclasses say which jobs to validate first (`_prepare`) and
    run the search (`_search`), launching through `_launch`.

    Not a BasicSweeper subclass: Hydra's first plugin scan re-executes
    hydra._internal.core_plugins, and a subclass made before it (any import of
    gdexp.sweeper, whose GridSweeper is one) then fails in BasicSweeper's
    __init__. So this module imports gdexp.sweeper only once a sweep runs.
    """

    def __init__(self, params: Optional[Dict[str, str]] = None) -> None:
        self.params = dict(params or {})
        self.hydra_context = self.config = self.launcher = None
        self.summaries: list[dict] = []

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> List[dict]:
        from gdexp.sweeper import sweep_name, validate_jobs

        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        try:
            parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
            fixed, examples = self._prepare(parser.parse_overrides(lines))
            validate_jobs(self.hydra_context.config_loader, self.config, examples)
        except ConfigError as exc:
            sys.exit(f"gdexp: error: {exc}")  # one line, exit 1, no run created
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        failed = lambda: sum(s.get("job_failed", False) for s in self.summaries)  # noqa: E731
        with sweep_run(self.config, sweep_name(self.config), job_failures=failed) as parent_id:
            outcome = self._search(fixed)
            self._log_results(parent_id, outcome.metrics, outcome.params, outcome.tags)
        print("\n".join(outcome.report))
        if outcome.error:
            # The parent was closed with the summary of its runs; the search itself found no answer.
            self._client().set_terminated(parent_id, status="FAILED")
            sys.exit(f"gdexp: {sweep_name(self.config)}: {outcome.error}")
        return self.summaries

    def _prepare(self, overrides: List[Override]) -> tuple[List[str], List[List[str]]]:
        """(overrides every job gets, example jobs to validate); ConfigError for bad input."""
        raise NotImplementedError

    def _search(self, fixed: List[str]) -> Outcome:
        raise NotImplementedError

    def _launch(self, jobs: List[List[str]]) -> List[dict]:
        """Launch one batch: each job's summary (gdexp.app.summary), status 'failed' if it raised."""
        out = []
        for ret in self.launcher.launch(jobs, initial_job_idx=len(self.summaries)):
            # A job that raised outside gdexp's recording has no MLflow run; sweep_run counts it.
            failed = ret.status == JobStatus.FAILED
            out.append({"status": FAILED, "job_failed": True} if failed else ret.return_value)
        self.summaries.extend(out)
        return out

    def _log_results(self, run_id: str, metrics: Dict[str, float], params: Dict[str, Any] | None = None,
                     tags: Dict[str, str] | None = None) -> None:
        """Results on a run of the sweep (the parent, or a child already closed), in one request."""
        from mlflow.entities import Metric, Param, RunTag

        self._client().log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
                                 params=[Param(k, str(v)) for k, v in (params or {}).items()],
                                 tags=[RunTag(k, v) for k, v in (tags or {}).items()])

    def _client(self):
        # The store sweep_run opened the parent in.
        return tracking.client(tracking.resolve_uri(self.config.tracking.uri))


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
        for o in overrides:
            if o.is_sweep_override() or o.key_or_group == LR:
                raise ConfigError(o.key_or_group, o.input_line.split("=", 1)[1],
                                  f"lr_find probes {LR} itself and runs one configuration: "
                                  "give fixed values only (the first probe is hydra.sweeper.start)")
        fixed = [o.input_line for o in overrides]
        return fixed, [[*fixed, f"{LR}={clean(self.start)}"]]

    def _search(self, fixed: List[str]) -> Outcome:
        def is_stable(lr: float) -> bool | None:
            (summary,) = self._launch([[*fixed, f"{LR}={clean(lr)}"]])
            n, status = len(self.summaries), summary["status"]
            log.info(f"lr_find probe {n}: {LR}={clean(lr)} {status}")
            if status not in DESCENT_STATUSES:  # 'failed': no descent result to judge
                print(f"gdexp: lr_find: probe {n} ({LR}={clean(lr)}) ended {status}, so it cannot "
                      "tell stable from diverged: the search stops", file=sys.stderr)
                return None
            return status != DIVERGED

        bracket = find_boundary(is_stable, self.start, self.factor, self.rtol, self.max_probes)
        metrics = {"lr_found": bracket.lo, "lr_found_lo": bracket.lo, "lr_found_hi": bracket.hi,
                   "probes": bracket.probes}
        metrics = {k: v for k, v in metrics.items() if v is not None}
        settings = {"start": self.start, "factor": self.factor, "rtol": self.rtol, "max_probes": self.max_probes}
        return Outcome(metrics, params={f"lr_find.{k}": v for k, v in settings.items()},
                       report=["lr_find: " + ", ".join(f"{k}={v:g}" for k, v in metrics.items())],
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
