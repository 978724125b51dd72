"""lr_range_test: the learning-rate range test beside the grid that checks it (hydra/sweeper=lr_range_test).

For each setting of the swept keys (each group and seed), one range-test run
(gdexp.results.range_test: the rate ramped exponentially from start_lr to
end_lr over num_steps updates by the `exponential` schedule, stopped by
``stopping.early_stop_threshold``; any optimizer, any loss), and the usual
log-spaced grid over the same range (`points` learning rates, the sweep's
own schedule and stopping rules). All are children of one parent run; its
summary table and answers (best_lr, max_stable_lr per group) are the grid's.
The parent also gets, per group, ``suggested_lr`` (the median over the
group's seeds of each range test's suggestion) and the ratios
``suggested_to_best_lr`` = suggested_lr / best_lr and
``suggested_to_max_stable_lr`` = suggested_lr / max_stable_lr. Each range-test
run is tagged ``gdexp.lr_range_test=true`` and carries its own ``suggested_lr``.
"""
from __future__ import annotations

import itertools
import logging
import math
import re
from typing import Dict, List, Optional

import numpy as np
from hydra.core.override_parser.types import Override

from gdexp.core.errors import ConfigError
from gdexp.hydra.grids import clean, expand, logspace
from gdexp.hydra.sweepers.common import row_of
from gdexp.hydra.sweepers.search import Outcome, SearchSweeper, fixed_line
from gdexp.results import range_test

log = logging.getLogger(__name__)

LR = "optimizer.lr"
RANGE_TAG = "gdexp.lr_range_test"
# What a range-test run sets itself; a setting's own values for these keys go to the grid only.
_RAMP_KEYS = ("optimizer.lr", "schedule", "stopping.maxiter", "stopping.early_stop_threshold",
              "stopping.gtol", "stopping.patience", "stopping.prune")


class LrRangeTestSweeper(SearchSweeper):
    """Range test and grid, side by side (see the module docstring).

    Args:
        start_lr, end_lr: the range (the grid's ends too), Lightning's 1e-8 and 1.
        num_steps: updates of the ramp (Lightning's num_training, 100).
        threshold: the range test stops once its loss passes threshold x its best so far
            (Lightning's early_stop_threshold, 4).
        points: learning rates of the grid, log-spaced over [start_lr, end_lr] (13).
        params: overrides for every job; comma lists sweep, as on the command line.
    """

    def __init__(self, start_lr: float = range_test.START_LR, end_lr: float = range_test.END_LR,
                 num_steps: int = range_test.NUM_STEPS, threshold: float = range_test.THRESHOLD,
                 points: int = 13, params: Optional[Dict[str, str]] = None) -> None:
        super().__init__(params)
        self.start_lr, self.end_lr, self.num_steps = start_lr, end_lr, num_steps
        self.threshold, self.points = threshold, points
        self.settings: list[list[str]] = []

    def sweep(self, arguments: List[str]):
        self.params = {k: expand(f"{k}={v}").split("=", 1)[1] for k, v in self.params.items()}
        return super().sweep([expand(a) for a in arguments])

    def _prepare(self, overrides: List[Override]) -> tuple[List[str], List[List[str]]]:
        checks = [("start_lr", self.start_lr, math.isfinite(self.start_lr) and self.start_lr > 0,
                   "must be finite and > 0"),
                  ("end_lr", self.end_lr, math.isfinite(self.end_lr) and self.end_lr > self.start_lr,
                   "must be finite and > start_lr"),
                  ("num_steps", self.num_steps, isinstance(self.num_steps, int) and self.num_steps >= 2,
                   "must be an integer >= 2"),
                  ("threshold", self.threshold, self.threshold > 1, "must be > 1"),
                  ("points", self.points, isinstance(self.points, int) and self.points >= 2,
                   "must be an integer >= 2")]
        for key, value, ok, reason in checks:
            if not ok:
                raise ConfigError(f"hydra.sweeper.{key}", value, reason)
        axes = []
        for o in overrides:
            if o.key_or_group == LR:
                value = o.input_line.split("=", 1)[1]
                as_typed = re.fullmatch(r"choice\(([^,]*)\)", value)  # one value, deferred by gdexp's argv
                raise ConfigError(LR, as_typed.group(1) if as_typed else value, "lr_range_test sets the learning rate "
                                  "itself (hydra.sweeper.start_lr .. end_lr): leave it out")
            line = fixed_line(o)
            if line is not None:
                axes.append([line])
            else:
                prefix = o.input_line.split("=", 1)[0]
                axes.append([f"{prefix}={v}" for v in o.sweep_string_iterator()])
        self.settings = [list(s) for s in itertools.product(*axes)] or [[]]
        # Run names carry what varies, and the range test's threshold tells it from the grid's runs.
        swept = tuple(a[0].lstrip("+~").split("=", 1)[0] for a in axes if len(a) > 1)
        self.searched = (*swept, "stopping.early_stop_threshold")
        jobs = self._jobs()
        return [], jobs

    def _ramp(self, setting: List[str]) -> List[str]:
        """A setting's range-test job: its overrides (less the ramp's keys) and the ramp."""
        mine = [o for o in setting if o.lstrip("+~").split("=", 1)[0].split("@")[0] not in _RAMP_KEYS
                and not o.lstrip("+~").startswith("schedule.")]
        gamma = range_test.ramp_gamma(self.start_lr, self.end_lr, self.num_steps)
        # num_steps - 1 updates: losses at steps 0 .. num_steps - 1, each paired with the
        # rate of the update that follows it, Lightning's num_training points.
        return [*mine, f"{LR}={clean(self.start_lr)}", "schedule=exponential", f"schedule.gamma={gamma!r}",
                f"stopping.maxiter={self.num_steps - 1}", f"stopping.early_stop_threshold={self.threshold!r}",
                "stopping.gtol=0", "stopping.patience=0", "stopping.prune=none"]

    def _jobs(self) -> List[List[str]]:
        grid = logspace(self.start_lr, self.end_lr, self.points)
        return ([self._ramp(s) for s in self.settings]
                + [[*s, f"{LR}={clean(lr)}"] for s in self.settings for lr in grid])

    def _search(self, fixed: List[str]) -> Outcome:
        import pandas as pd

        from gdexp.results.summary import metric_names, summarize
        from gdexp.results.table import typed_table
        from gdexp.tracking.reader import load_curve

        jobs = self._jobs()
        returns = self.launcher.launch(jobs, initial_job_idx=0)
        rows = [row_of(ret, job) for ret, job in zip(returns, jobs)]
        n = len(self.settings)
        tests, grid = rows[:n], rows[n:]
        self.rows.extend(grid)  # the parent's summary is the grid's
        summary = summarize(typed_table(grid))
        groups = summary.runs.set_index("run_id")["group"].astype(str).to_dict()
        per_group: dict[str, list[float]] = {}
        for k, (setting, test) in enumerate(zip(self.settings, tests)):
            first = grid[k * self.points].get("run_id")
            suggested = math.nan
            if test.get("run_id") and test.get("status") not in (None, "failed"):
                curve = load_curve(test["run_id"], self._uri())
                lrs = range_test.ramp_lrs(self.start_lr, self.end_lr, self.num_steps, len(curve))
                suggested = range_test.suggest_lr(curve["loss"].to_numpy(), lrs)
                self._log_results(test["run_id"], {"suggested_lr": suggested} if np.isfinite(suggested) else {},
                                  tags={RANGE_TAG: "true"})
            log.info(f"lr_range_test {' '.join(setting)}: suggested_lr={suggested:g}, "
                     f"stopped at step {test.get('iterations')}")
            per_group.setdefault(groups.get(first, ""), []).append(suggested)
        names = metric_names(summary.answers)
        metrics, report = {}, []
        for _, row in summary.answers.iterrows():
            group = str(row["group"])
            found = [v for v in per_group.get(group, []) if np.isfinite(v)]
            if not found:
                report.append(f"lr_range_test {group}: no suggestion (every range test stopped too early)")
                continue
            suggested = float(np.median(found))
            values = {"suggested_lr": suggested,
                      "suggested_to_best_lr": suggested / row["best_lr"],
                      "suggested_to_max_stable_lr": suggested / row["max_stable_lr"]}
            values = {k: v for k, v in values.items() if pd.notna(v) and np.isfinite(v)}
            metrics.update({k + names[group]: v for k, v in values.items()})
            report.append(f"lr_range_test{' ' + group if len(summary.answers) > 1 else ''}: "
                          + ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                          + f", best_lr={row['best_lr']:g}, max_stable_lr={row['max_stable_lr']:g}")
        settings = {"start_lr": self.start_lr, "end_lr": self.end_lr, "num_steps": self.num_steps,
                    "threshold": self.threshold, "points": self.points}
        return Outcome(metrics, params={f"lr_range_test.{k}": v for k, v in settings.items()}, report=report)
