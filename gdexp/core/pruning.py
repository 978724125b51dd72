"""Successive halving inside one vectorized batch (``stopping.prune=halving``).

Jamieson & Talwalkar's successive halving, as Optuna's SuccessiveHalvingPruner
and Ray Tune's ASHA apply it to trials, applied here to the rows of one
batch: at the rungs, steps ``min_steps * eta^k`` (100, 300, 900, ... for the
defaults), among the runs of a group still running, the best ``1/eta`` of its
learning rates go on and the others stop with status ``pruned`` (stop reason
``halving``). Synchronous and deterministic: every rung judges every running
row of the group at the same step, so the same sweep prunes the same runs.

- A group is what the summary groups (gdexp.results.groups): the runs whose
  configs differ only in the learning rate and the seed (gdexp.specs.halving.group_key
  reads them from the configs).
- A unit is one learning rate of a group: its seeds are kept or pruned
  together, by the mean of their current values.
- The current value is the monitored metric, in the summary's order
  (gdexp.results.groups.monitor): ``val_accuracy`` (higher is better) where
  the loss has it, else ``val_loss``, else the full training loss under
  mini-batches, else the loss.
- A unit none of whose runs is still running is not judged; one whose runs
  diverged (any seed, at any step so far) or whose value is not finite is
  never kept. ``max(1, floor(n / eta))`` of the n judged units are kept; ties
  go to the smaller learning rate, as best_lr's do.

numpy only; the descent (gdexp.core.descent) calls `Halving.survivors` at
each rung, after its stopping rules, on the rows they left running.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The metric a rung compares, as the summary's monitor picks it: (name, higher is better).
MONITORED = (("val_accuracy", True), ("val_loss", False), ("train_loss", False))


@dataclass(frozen=True)
class Halving:
    """Successive halving over a batch's rows.

    Attributes:
        eta: the reduction factor (> 1): a rung keeps the best 1/eta of a group's units.
        min_steps: the first rung's step (>= 1).
        group: ``(B,)`` ints, the rows judged together.
        unit: ``(B,)`` ints, the rows kept or pruned together (a learning rate's seeds).
        lr: ``(B,)`` the rows' learning rates (ties go to the smaller).
    """

    eta: float
    min_steps: int
    group: np.ndarray
    unit: np.ndarray
    lr: np.ndarray
    monitored = MONITORED

    def rungs(self, maxiter: int) -> list[int]:
        """The rung steps below maxiter: min_steps * eta^k rounded to integers, increasing.

        >>> Halving(3.0, 100, *np.zeros((3, 1))).rungs(10_000)
        [100, 300, 900, 2700, 8100]
        """
        out, k = [], 0
        while True:
            step = int(round(self.min_steps * self.eta ** k))
            if step >= maxiter:
                return out
            if not out or step > out[-1]:
                out.append(step)
            k += 1

    def survivors(self, value: np.ndarray, higher_is_better: bool, running: np.ndarray,
                  spoiled: np.ndarray) -> np.ndarray:
        """Which rows go on past this rung.

        Args:
            value: ``(B,)`` each row's current value (ignored where not running).
            higher_is_better: the value's direction (val_accuracy: True).
            running: ``(B,)`` bool, rows no rule has stopped.
            spoiled: ``(B,)`` bool, rows that diverged: their unit is never kept.

        Returns:
            ``(B,)`` bool: True for running rows that go on (False for every row not running).

        >>> h = Halving(3.0, 100, np.zeros(6, int), np.arange(6), np.arange(1.0, 7.0))
        >>> h.survivors(np.array([5., 1., 3., 2., 4., np.nan]), False, np.ones(6, bool), np.zeros(6, bool))
        array([False,  True, False,  True, False, False])
        """
        keep = np.zeros(len(value), dtype=bool)
        for g in np.unique(self.group[running]):
            in_group = self.group == g
            units = np.unique(self.unit[in_group & running])
            scored = []
            for u in units:
                rows = in_group & (self.unit == u)
                mean = float(np.mean(value[rows & running]))
                if spoiled[rows].any() or not math.isfinite(mean):
                    continue
                scored.append((-mean if higher_is_better else mean, float(self.lr[rows][0]), int(u)))
            kept = {u for _, _, u in sorted(scored)[:max(1, int(len(units) // self.eta))]}
            keep |= in_group & running & np.isin(self.unit, list(kept))
        return keep


@dataclass(frozen=True)
class Replay:
    """A pruner that stops every row at one step, as ``pruned``: a pruned run re-executed
    alone (``gdexp rerun``) stops where its group stopped it, with the same curve."""

    step: int
    monitored = MONITORED

    def rungs(self, maxiter: int) -> list[int]:
        return [self.step] if self.step < maxiter else []

    def survivors(self, value, higher_is_better, running, spoiled) -> np.ndarray:
        return np.zeros(len(value), dtype=bool)
