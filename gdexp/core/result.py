"""What a descent returns for each run: status, curves, final point (scipy's OptimizeResult, batched)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from gdexp.core.outcomes import DIVERGED, PRUNED


@dataclass(frozen=True)
class Result:
    """One run's outcome: its status and its curves at every step (step 0 = the start).

    Attributes:
        status: one of gdexp.core.outcomes.DESCENT_STATUSES.
        stop_reason: why it stopped (gdexp.core.outcomes.STOP_REASONS).
        iterations: the last step (gradient steps taken).
        loss: ``(iterations + 1,)`` loss at every step.
        grad_norm: ``(iterations + 1,)`` Euclidean norm of the gradient at every step.
        path: ``(iterations + 1, dim)`` parameters at every step, or None for losses
            with more than MAX_TRACKED_DIM parameters.
        x: ``(dim,)`` the final parameters (at the stop step).
        lr: ``(iterations + 1,)`` the rate of the update that led to each step (step 0: the
            first update's), under a schedule; None at a constant rate.
        events: values measured at some steps only, ``name -> (steps, values)``: the loss's
            evaluation metrics (``val_loss``, ``val_accuracy``, ``train_loss``: the full
            training loss), ``sharpness`` and ``2/lr``; each at its steps and the stop step.
    """

    status: str
    stop_reason: str
    iterations: int
    loss: np.ndarray
    grad_norm: np.ndarray
    path: np.ndarray | None
    x: np.ndarray
    lr: np.ndarray | None = None
    events: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.status == DIVERGED

    @property
    def diverged_step(self) -> int | None:
        return self.iterations if self.diverged else None

    @property
    def pruned_step(self) -> int | None:
        """The step successive halving stopped the run at (gdexp.core.pruning); None if it was not pruned."""
        return self.iterations if self.status == PRUNED else None

    @property
    def divergence(self) -> str | None:
        """'nan', 'inf' or 'threshold' for a diverged run."""
        return self.stop_reason if self.diverged else None

    # Computed once (a pass over every step's loss, ~50 us a run; recording a run asks several
    # times): a Result's curves are never changed after the descent.
    @cached_property
    def best_step(self) -> int:
        finite = np.where(np.isfinite(self.loss), self.loss, np.inf)
        return int(np.argmin(finite))

    @property
    def best_loss(self) -> float:
        return float(self.loss[self.best_step])

    def steps_to_best(self, rtol: float) -> int:
        """The first step from which the loss stays within rtol (relative) of its final value:
        how fast a run got to its answer, which breaks ties between learning rates that reach
        the same loss (gdexp.results.ties). A run that blew up: its last step.

        >>> r = Result("converged", "grad_tol", 3, np.array([4.0, 2.0, 1.0000001, 1.0]), np.zeros(4), None, np.zeros(1))
        >>> r.steps_to_best(1e-6), r.steps_to_best(0.0)
        (2, 3)
        """
        if self.diverged or not np.isfinite(self.final_loss):
            return self.iterations
        final = self.final_loss
        outside = np.flatnonzero(~(np.abs(self.loss - final) <= rtol * np.maximum(np.abs(self.loss), abs(final))))
        return int(outside[-1]) + 1 if outside.size else 0

    @cached_property
    def final_loss(self) -> float:
        """The loss at the last step; for a run that blew up, its last finite value."""
        finite = np.flatnonzero(np.isfinite(self.loss))
        return float(self.loss[finite[-1]]) if finite.size else float("nan")
