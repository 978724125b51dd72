"""The one vocabulary of outcomes, as scipy's OptimizeResult has one table of statuses.

Every layer (descent, MLflow tags, the summary table, reports, sweepers)
uses these strings verbatim, so a filter such as
``tags.`gdexp.status` = 'diverged'`` means the same everywhere.

A run's status is one of:

- ``converged``: the gradient norm fell below ``stopping.gtol``, or the
  patience rule fired; also a run stopped where its gradient is undefined
  (stop reason ``grad_undefined``: a non-finite gradient at a finite loss no
  worse than the run's best so far, a kink such as a norm at 0) and a run
  whose start was already stationary (stop reason ``stationary``: it never
  moved);
- ``diverged``: loss, gradient or parameters became nan/inf, or the loss
  passed ``stopping.divergence_factor`` x |initial loss| (a result, not a failure);
- ``max_iters``: the budget ran out first;
- ``pruned``: stopped early by successive halving (``stopping.prune=halving``,
  gdexp.core.pruning) because other learning rates of its group were doing
  better; its result is what it had at its prune step, and whether it would
  have stayed stable after that is unknown;
- ``failed``: the run's code raised (MLflow status FAILED, error on ``gdexp.error``);
- ``unrecorded``: descended, but the store did not answer; kept on disk for
  ``gdexp resume``.
"""
from __future__ import annotations

CONVERGED, DIVERGED, MAX_ITERS = "converged", "diverged", "max_iters"
PRUNED = "pruned"
FAILED = "failed"
UNRECORDED = "unrecorded"

# What a finished descent can end with; the statuses a run in the store can have.
DESCENT_STATUSES = (CONVERGED, DIVERGED, MAX_ITERS, PRUNED)
STATUSES = (*DESCENT_STATUSES, FAILED, UNRECORDED)
# Runs that give a usable answer (best_lr, max_stable_lr, report figures); a pruned run stopped
# before its budget, so it answers neither.
STABLE = (CONVERGED, MAX_ITERS)

# Why a row stopped, in priority order when several rules fire at one step:
# a non-finite value beats the threshold, divergence beats convergence.
# Index 0 is "still running" (the descent's int8 code for a live row).
# ``early_stop_threshold``: the loss passed stopping.early_stop_threshold x its best so far (the
# learning-rate range test's stop, Lightning's `early_stop_threshold`); ``halving``: pruned by
# successive halving, judged only among rows that no other rule stopped at that step.
# grad_undefined beats nan and inf (the gradient alone is non-finite, at a loss
# no worse than the best so far: the point is a kink, not a blow-up);
# stationary is grad_tol at step 0. The priority is the descent's (gdexp.core.descent._stop_reasons);
# the tuple's order is only the int8 code of each reason.
STOP_REASONS = ("running", "nan", "inf", "threshold", "early_stop_threshold", "grad_tol", "patience",
                "max_iters", "halving", "grad_undefined", "stationary")
STATUS_OF_REASON = {"nan": DIVERGED, "inf": DIVERGED, "threshold": DIVERGED, "early_stop_threshold": DIVERGED,
                    "grad_tol": CONVERGED, "patience": CONVERGED, "max_iters": MAX_ITERS, "halving": PRUNED,
                    "grad_undefined": CONVERGED, "stationary": CONVERGED}
