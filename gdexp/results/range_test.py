"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates", section 3.3): its ramp and its suggestion.

One run whose learning rate grows exponentially from `start_lr` to `end_lr`
over `num_steps` updates, stopped once its loss passes `threshold` times the
best loss so far; the suggestion is the rate at the steepest descent of the
loss against log learning rate. Defaults and pairing as PyTorch Lightning's
``Tuner.lr_find`` (``min_lr=1e-8, max_lr=1, num_training=100,
early_stop_threshold=4``; ``_ExponentialLR``: update k, k = 0, 1, ..., uses
``start_lr * (end_lr / start_lr) ** (k / num_steps)``, and the loss before
update k is paired with that rate). Lightning smooths the loss (beta 0.98)
against mini-batch noise; gdexp's range test does not: a full-batch loss has none.
"""
from __future__ import annotations

import math

import numpy as np

# Lightning's lr_find defaults.
START_LR, END_LR, NUM_STEPS, THRESHOLD = 1e-8, 1.0, 100, 4.0
SKIP_BEGIN, SKIP_END = 10, 1


def ramp_gamma(start_lr: float, end_lr: float, num_steps: int) -> float:
    """The per-update factor of the exponential ramp: (end_lr / start_lr)^(1 / num_steps).

    >>> round(ramp_gamma(1e-8, 1.0, 100), 12)
    1.202264434617
    """
    return (end_lr / start_lr) ** (1.0 / num_steps)


def ramp_lrs(start_lr: float, end_lr: float, num_steps: int, n: int) -> np.ndarray:
    """``(n,)`` the rate of update k = 0 .. n-1 (the rate paired with the loss at step k)."""
    return start_lr * ramp_gamma(start_lr, end_lr, num_steps) ** np.arange(n)


def suggest_lr(loss: np.ndarray, lr: np.ndarray, skip_begin: int = SKIP_BEGIN, skip_end: int = SKIP_END) -> float:
    """The rate at the steepest descent of the loss against log learning rate, or NaN.

    As Lightning's ``_LRFinder.suggestion``: the first `skip_begin` and last
    `skip_end` points are dropped, then non-finite losses, and the gradient
    (numpy.gradient: central differences, one-sided at the ends) is taken
    against log(lr) (Lightning differentiates against lr itself since 2.0;
    on an exponential ramp its earlier index spacing is log(lr)'s, the
    steepest descent the range test means).

    Args:
        loss: ``(n,)`` the loss at steps 0 .. n-1 of the range-test run.
        lr: ``(n,)`` the rate of the update from each of those steps (ramp_lrs).

    Returns:
        The suggested rate; NaN when fewer than 2 points remain (the run stopped
        within skip_begin + skip_end + 1 steps).

    >>> lr = ramp_lrs(1e-8, 1.0, 100, 40)
    >>> loss = 1.0 / (1.0 + np.exp(np.log(lr) - np.log(1e-5)))    # falls fastest at 1e-5
    >>> round(math.log10(suggest_lr(loss, lr)), 1)
    -5.0
    """
    loss, lr = np.asarray(loss, dtype=float), np.asarray(lr, dtype=float)
    index = np.arange(len(loss))[skip_begin:len(loss) - skip_end]
    index = index[np.isfinite(loss[index])]
    if len(index) < 2:
        return math.nan
    slope = np.gradient(loss[index], np.log(lr[index]))
    return float(lr[index[int(np.argmin(slope))]])
