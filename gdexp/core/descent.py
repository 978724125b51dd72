"""The descent loop: a batch of runs, one row each, every row stopping on its own.

numpy only. A row's arithmetic never mixes with other rows (the losses and
optimizers promise that too), so a run gives bit-identical curves alone or
inside any batch.
"""
from __future__ import annotations

import numpy as np

from gdexp.core.outcomes import STATUS_OF_REASON, STOP_REASONS
from gdexp.core.result import Result
from gdexp.core.stopping import StoppingRules

_RUNNING = 0  # STOP_REASONS[0]: the row is still running

# Parameters are kept at every step only while they are few enough to plot.
MAX_TRACKED_DIM = 10

# Steps per block between checks of the stopping rules (see descend).
_BLOCK = 32


def descend(loss, optimizer, x0: np.ndarray, rules: StoppingRules) -> list[Result]:
    """Run gradient descent on every row of x0 until each row stops.

    Args:
        loss: a gdexp.core.losses Loss (value_and_grad over (B, dim) points).
        optimizer: a gdexp.core.optimizers Optimizer, its hyper-parameters per row.
        x0: (B, dim) start points.
        rules: per-row stopping rules.

    Returns:
        One Result per row, in row order.
    """
    x = np.array(x0, dtype=float)
    B, dim = x.shape
    steps = int(rules.maxiter.max())
    # np.empty, not full: a row's entries past its stop are never read, and
    # filling 300 MB of a 1,000-run sweep with NaN costs more than its descent.
    losses = np.empty((steps + 1, B))
    gnorms = np.empty((steps + 1, B))
    params = np.empty((steps + 1, B, dim)) if dim <= MAX_TRACKED_DIM else None
    final_x = np.full((B, dim), np.nan)
    reason = np.zeros(B, dtype=np.int8)
    stop_step = np.zeros(B, dtype=np.int64)

    # Diverged rows produce inf/nan on purpose: that is data, not a warning.
    with np.errstate(all="ignore"):
        state = optimizer.init(x)
        f, g = loss.value_and_grad(x)
        # Work arrays hold only the rows still running; `rows` maps them back
        # (a slice while none has stopped: cheaper to index than an array).
        rows: slice | np.ndarray = slice(None)
        live = {
            "threshold": rules.divergence_factor * np.abs(f),
            "best": f.copy(),
            "wait": np.zeros(B, dtype=np.int64),
            "gtol": rules.gtol, "patience": rules.patience,
            "min_delta": rules.min_delta, "maxiter": rules.maxiter,
        }
        uses_patience = bool((rules.patience > 0).any())
        # Steps run in blocks, and the stopping rules are checked once per
        # block over its recorded curves: per step, the checks cost a 2-D
        # sweep as much as its arithmetic. A row that stopped inside a block
        # runs on to the block's end; its stop step, reason and final point
        # are read back from the record, and its extra steps (never read) cost
        # nothing else, rows being independent. Patience needs its counter at
        # every step, and the x check needs x at every step (not recorded
        # above MAX_TRACKED_DIM): those runs check every step.
        block = 1 if uses_patience or params is None else _BLOCK
        first_budget_end = int(rules.maxiter.min())
        t0 = 0
        while True:
            # Never past the first budget end: no row runs past its own max_iters,
            # so the record arrays (max_iters.max() + 1 steps) never overflow.
            t1 = min(t0 + block - 1, first_budget_end)
            n = len(f)
            if isinstance(rows, slice):  # record straight into the batch's arrays
                rec_f, rec_g = losses[t0:t1 + 1], gnorms[t0:t1 + 1]
                rec_x = None if params is None else params[t0:t1 + 1]
            else:  # contiguous buffers, scattered to `rows` once per block
                rec_f, rec_g = np.empty((t1 - t0 + 1, n)), np.empty((t1 - t0 + 1, n))
                rec_x = None if params is None else np.empty((t1 - t0 + 1, n, dim))
            for j, t in enumerate(range(t0, t1 + 1)):
                if t:
                    updates, state = optimizer.update(g, state, x)
                    x = x + updates
                    f, g = loss.value_and_grad(x)
                rec_f[j] = f
                # Squared norms here, one sqrt per block below (elementwise:
                # the same values).
                _sq_norm(g, out=rec_g[j])
                if rec_x is not None:
                    rec_x[j] = x
                if uses_patience and t:
                    improved = f < live["best"] - live["min_delta"]
                    live["best"] = np.where(improved, f, live["best"])
                    live["wait"] = np.where(improved, 0, live["wait"] + 1)
            np.sqrt(rec_g, out=rec_g)
            if not isinstance(rows, slice):
                losses[t0:t1 + 1, rows] = rec_f
                gnorms[t0:t1 + 1, rows] = rec_g
                if rec_x is not None:
                    # One coordinate at a time: numpy scatters (steps, rows)
                    # of doubles 4x faster than (steps, rows, dim).
                    for d in range(dim):
                        params[t0:t1 + 1, rows, d] = rec_x[..., d]
            if t1 < first_budget_end and not _may_stop(rec_f, rec_g, live, uses_patience):
                t0 = t1 + 1
                continue
            # Each row's reason at each step of the block, from the recorded x
            # (or, in one-step blocks without a record, x now).
            why = _stop_reasons(t0, rec_f, rec_g, x[None] if rec_x is None else rec_x, live)
            done = (why != _RUNNING).any(axis=0)
            if not done.any():
                t0 = t1 + 1
                continue
            cols = np.flatnonzero(done)
            first = (why[:, cols] != _RUNNING).argmax(axis=0)  # the step each stopped at
            index = np.arange(B)[rows][cols]
            reason[index] = why[first, cols]
            stop_step[index] = t0 + first
            final_x[index] = x[cols] if rec_x is None else rec_x[first, cols]
            keep = ~done
            if not keep.any():
                break
            rows = np.arange(B)[rows][keep]
            x, f, g = x[keep], f[keep], g[keep]
            state = {k: v[keep] for k, v in state.items()}
            live = {k: v[keep] for k, v in live.items()}
            first_budget_end = int(live["maxiter"].min())
            t0 = t1 + 1

    return [
        _trajectory(i, int(stop_step[i]), STOP_REASONS[reason[i]], losses, gnorms, params, final_x[i])
        for i in range(B)
    ]


def _sq_norm(g: np.ndarray, out: np.ndarray) -> None:
    """Each row's squared norm into `out`.

    einsum without `optimize` sums each row on its own: bit-identical in any
    batch. For two columns, two products and a sum give einsum's very
    values (tests/test_descent.py checks it) at a third of its cost: a 2-D
    sweep spent a quarter of its descent here.
    """
    if g.shape[1] == 2:
        a, b = g[:, 0], g[:, 1]
        np.multiply(a, a, out=out)
        np.add(out, b * b, out=out)
    else:
        np.einsum("ij,ij->i", g, g, out=out)


def _may_stop(f, gn, live, uses_patience: bool) -> bool:
    """A cheap screen of a block of steps, (steps, rows): could any row stop in it (budget aside)?

    f + gn carries every nan and inf of either into one array (it can also
    overflow on huge finite values, which only costs the exact check). A
    non-finite parameter makes the loss non-finite for every loss gdexp ships
    (tests/test_descent.py checks it); the exact check looks at x as well.
    """
    if uses_patience and (live["wait"] >= live["patience"]).any():
        return True
    return bool((gn < live["gtol"]).any() or (f > live["threshold"]).any()
                or not np.isfinite(f + gn).all())


def _stop_reasons(t0: int, f, gn, x, live) -> np.ndarray:
    """Each running row's reason to stop at each step t0, t0 + 1, ... of a block (0 = keep going).

    f, gn: (steps, rows); x: (steps, rows, dim). Patience is only checked in
    one-step blocks (its counter is the current step's).
    """
    why = np.zeros(f.shape, dtype=np.int8)
    step = t0 + np.arange(len(f))[:, None]
    # Lowest priority first, so a more serious reason overwrites it.
    why[step >= live["maxiter"]] = STOP_REASONS.index("max_iters")
    why[np.broadcast_to((live["patience"] > 0) & (live["wait"] >= live["patience"]), f.shape)] = \
        STOP_REASONS.index("patience")
    why[gn < live["gtol"]] = STOP_REASONS.index("grad_tol")
    why[f > live["threshold"]] = STOP_REASONS.index("threshold")
    why[np.isinf(f) | np.isinf(gn) | np.isinf(x).any(axis=-1)] = STOP_REASONS.index("inf")
    why[np.isnan(f) | np.isnan(gn) | np.isnan(x).any(axis=-1)] = STOP_REASONS.index("nan")
    return why


def _trajectory(i, last, stop_reason, losses, gnorms, params, final_x) -> Result:
    # Views into the batch's arrays, not copies: 3,000 strided copies cost a
    # 1,000-run sweep more than a third of its descent.
    return Result(
        status=STATUS_OF_REASON[stop_reason],
        stop_reason=stop_reason,
        iterations=last,
        loss=losses[: last + 1, i],
        grad_norm=gnorms[: last + 1, i],
        path=None if params is None else params[: last + 1, i],
        x=final_x,
    )
