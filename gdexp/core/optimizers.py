"""Optimizers as pure (init, update) pairs over a batch of runs.

Each row of x is one run with its own hyper-parameters (every numeric one a
scalar or a (B,) array), so a whole sweep descends in one vectorized loop.
The rules follow torch.optim's CPU code in its operation order, so 50 steps
here agree with PyTorch to 1e-13 relative; only torch's fused multiply-adds
are not reproduced.

Written once for numpy and torch arrays (gdexp.core.arrays): the state lives
where x lives (its library, dtype and device), and `update` computes in x's
namespace, numpy itself for numpy arrays.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from gdexp.core.arrays import is_numpy, like, namespace
from gdexp.core.errors import ConfigError
from gdexp.core.params import NonNegative, Positive, UnitClosed, UnitOpen, check_array, hints, schema

__all__ = [
    "OPTIMIZERS", "Optimizer", "make_optimizer",
    "gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
]

State = dict[str, np.ndarray]


class Optimizer(NamedTuple):
    """A named pair of pure functions, as in optax.

    `init(x0)` builds the state for x0 of shape (B, d); `update(grad, state, x)`
    returns `(updates, new_state)` and the caller applies `x = x + updates`.
    Every state array has the batch as its leading axis (hyper-parameters as
    (B, 1) columns), so finished rows are dropped with
    `{k: v[keep] for k, v in state.items()}`. update never writes into its
    inputs; the new state may share the unchanged hyper-parameter columns.

    >>> opt = make_optimizer("gd", lr=np.array([0.1, 0.2]))
    >>> x = np.ones((2, 3))
    >>> updates, state = opt.update(2 * x, opt.init(x), x)
    >>> x + updates
    array([[0.8, 0.8, 0.8],
           [0.6, 0.6, 0.6]])
    """

    name: str
    init: Callable[[np.ndarray], State]
    update: Callable[[np.ndarray, State, np.ndarray], tuple[np.ndarray, State]]


def _hyper(name: str, **values) -> dict[str, np.ndarray]:
    """Numeric hyper-parameters checked against the annotations of OPTIMIZERS[name]; float64
    scalars or (B,) arrays. (By name: inside `momentum`, the argument `momentum` hides the factory.)

    The annotation of each keyword (gdexp.core.params: Positive, UnitOpen, ...) is
    its admissible range, so a new hyper-parameter is one annotated argument.
    """
    types = hints(OPTIMIZERS[name])
    return {key: check_array(f"optimizer.{key}", value, types[key]) for key, value in values.items()}


def _flag(key: str, value) -> bool:
    # A per-row bool would change the state's keys row by row; keep it batch-wide.
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"optimizer.{key}", value, "must be true or false, shared by the batch")
    return bool(value)


def _init(hyper: dict[str, np.ndarray], buffers=(), step=False) -> Callable[[np.ndarray], State]:
    """An init that broadcasts `hyper` to (B, 1) columns and zeroes each (B, d) buffer."""

    def init(x0: np.ndarray) -> State:
        if np.ndim(x0) != 2:
            raise ValueError(f"x0 must have shape (B, d), got {np.shape(x0)}")
        b = len(x0)
        for key, v in hyper.items():
            if v.ndim and len(v) != b:
                raise ValueError(f"optimizer.{key} has {len(v)} per-row values but x0 has {b} rows")
        state = {key: np.broadcast_to(v.reshape(-1, 1), (b, 1)).copy() for key, v in hyper.items()}
        state.update({key: np.zeros(np.shape(x0)) for key in buffers})
        state = {**state, "step": np.zeros((b, 1))} if step else state
        # Another library's x (torch): the state where x is, in its dtype.
        return state if is_numpy(x0) else {key: like(v, x0) for key, v in state.items()}

    return init


def _l2(grad: np.ndarray, state: State, x: np.ndarray) -> np.ndarray:
    # torch skips the term when weight_decay == 0, which keeps 0 * inf from
    # turning an already diverged row's gradient into NaN.
    wd = state["weight_decay"]
    if not wd.any():  # the common case, and the same result without 3 array passes
        return grad
    return namespace(grad).where(wd != 0, grad + wd * x, grad)


def _lerp(start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    # torch's lerp_ switches formula at 0.5 so that each end is hit exactly.
    return namespace(start).where(weight < 0.5, start + weight * (end - start), end - (end - start) * (1 - weight))


def gd(lr: Positive = 1e-3, weight_decay: NonNegative = 0.0) -> Optimizer:
    """Plain gradient descent as torch.optim.SGD (momentum=0): x <- x - lr * g.

    Args:
        lr: Step size, > 0.
        weight_decay: L2 coefficient; g <- g + weight_decay * x, as in torch.
    """
    hyper = _hyper("gd", lr=lr, weight_decay=weight_decay)

    def update(grad, state, x):
        return -state["lr"] * _l2(grad, state, x), dict(state)

    return Optimizer("gd", _init(hyper), update)


def _sgd(name: str, hyper: dict[str, np.ndarray], nesterov: bool) -> Optimizer:
    """torch.optim.SGD's momentum branch, shared by `momentum` and `nesterov`."""

    def update(grad, state, x):
        g, mu, xp = _l2(grad, state, x), state["momentum"], namespace(grad)
        damped = (1 - state["dampening"]) * g if "dampening" in state else g
        buf = xp.where(state["step"] == 0, g, mu * state["momentum_buffer"] + damped)
        # torch bypasses the buffer entirely for rows with momentum == 0.
        direction = xp.where(mu != 0, g + mu * buf if nesterov else buf, g)
        return -state["lr"] * direction, {**state, "momentum_buffer": buf, "step": state["step"] + 1}

    return Optimizer(name, _init(hyper, ("momentum_buffer",), step=True), update)


def momentum(lr: Positive = 1e-3, momentum: NonNegative = 0.9, dampening: UnitClosed = 0.0,
             weight_decay: NonNegative = 0.0) -> Optimizer:
    """Heavy ball as torch.optim.SGD(momentum, dampening): x <- x - lr * buf.

    buf is the first gradient, then buf <- momentum * buf + (1 - dampening) * g.

    Args:
        lr: Step size, > 0.
        momentum: Buffer decay, >= 0.
        dampening: Fraction of each new gradient kept out of the buffer, in [0, 1].
        weight_decay: L2 coefficient; g <- g + weight_decay * x, as in torch.
    """
    hyper = _hyper("momentum", lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    return _sgd("momentum", hyper, nesterov=False)


def nesterov(lr: Positive = 1e-3, momentum: NonNegative = 0.9, weight_decay: NonNegative = 0.0) -> Optimizer:
    """Nesterov as torch.optim.SGD(nesterov=True): x <- x - lr * (g + momentum * buf).

    buf is as in `momentum`, undamped.

    Args:
        lr: Step size, > 0.
        momentum: Buffer decay, >= 0.
        weight_decay: L2 coefficient; g <- g + weight_decay * x, as in torch.
    """
    hyper = _hyper("nesterov", lr=lr, momentum=momentum, weight_decay=weight_decay)
    return _sgd("nesterov", hyper, nesterov=True)


def adagrad(lr: Positive = 1e-2, lr_decay: NonNegative = 0.0, initial_accumulator_value: NonNegative = 0.0,
            eps: Positive = 1e-10, weight_decay: NonNegative = 0.0) -> Optimizer:
    """Adagrad as torch.optim.Adagrad: x <- x - clr * g / (sqrt(sum) + eps).

    At step t, sum <- sum + g * g and clr = lr / (1 + (t - 1) * lr_decay).

    Args:
        lr: Step size, > 0.
        lr_decay: Harmonic decay of the step size, >= 0.
        initial_accumulator_value: Starting value of sum, >= 0.
        eps: Added to the root, > 0.
        weight_decay: L2 coefficient; g <- g + weight_decay * x, as in torch.
    """
    hyper = _hyper("adagrad", lr=lr, lr_decay=lr_decay, initial_accumulator_value=initial_accumulator_value,
                   eps=eps, weight_decay=weight_decay)
    zeroed = _init(hyper, ("sum",), step=True)

    def init(x0):
        # Only init needs the starting value; the sum carries it from then on.
        state = zeroed(x0)
        start = state.pop("initial_accumulator_value")
        return {**state, "sum": state["sum"] + start}

    def update(grad, state, x):
        g, step = _l2(grad, state, x), state["step"] + 1
        clr = state["lr"] / (1 + (step - 1) * state["lr_decay"])
        total = state["sum"] + g * g
        return -clr * g / (namespace(g).sqrt(total) + state["eps"]), {**state, "sum": total, "step": step}

    return Optimizer("adagrad", init, update)


def rmsprop(lr: Positive = 1e-2, alpha: UnitClosed = 0.99, eps: Positive = 1e-8, momentum: NonNegative = 0.0,
            centered: bool = False, weight_decay: NonNegative = 0.0) -> Optimizer:
    """RMSprop as torch.optim.RMSprop, centered and momentum branches included.

    square_avg <- alpha * square_avg + (1 - alpha) * g * g and avg =
    sqrt(square_avg) + eps, or, centered, sqrt(square_avg - grad_avg**2) + eps
    with grad_avg the same running mean of g. Then x <- x - lr * g / avg, or
    with momentum > 0, buf <- momentum * buf + g / avg (from 0), x <- x - lr * buf.

    Args:
        lr: Step size, > 0.
        alpha: Smoothing constant, in [0, 1].
        eps: Added to the root, > 0.
        momentum: Buffer decay, >= 0; 0 leaves the buffer out for that row.
        centered: Divide by the gradient's variance, not its second moment (bool).
        weight_decay: L2 coefficient; g <- g + weight_decay * x, as in torch.
    """
    hyper = _hyper("rmsprop", lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay)
    centered = _flag("centered", centered)

    def update(grad, state, x):
        g, alpha, mu, xp = _l2(grad, state, x), state["alpha"], state["momentum"], namespace(grad)
        new = {"square_avg": alpha * state["square_avg"] + (1 - alpha) * g * g}
        if centered:
            new["grad_avg"] = _lerp(state["grad_avg"], g, 1 - alpha)
            avg = xp.sqrt(new["square_avg"] - new["grad_avg"] * new["grad_avg"]) + state["eps"]
        else:
            avg = xp.sqrt(new["square_avg"]) + state["eps"]
        new["momentum_buffer"] = mu * state["momentum_buffer"] + g / avg
        updates = xp.where(mu > 0, -state["lr"] * new["momentum_buffer"], -state["lr"] * g / avg)
        return updates, {**state, **new}

    buffers = ("square_avg", "momentum_buffer") + (("grad_avg",) if centered else ())
    return Optimizer("rmsprop", _init(hyper, buffers), update)


def adam(lr: Positive = 1e-3, beta1: UnitOpen = 0.9, beta2: UnitOpen = 0.999, eps: Positive = 1e-8,
         amsgrad: bool = False, weight_decay: NonNegative = 0.0) -> Optimizer:
    """Adam with L2 weight decay as torch.optim.Adam (not AdamW).

    exp_avg <- lerp(exp_avg, g, 1 - beta1), exp_avg_sq <- beta2 * exp_avg_sq +
    (1 - beta2) * g * g; amsgrad uses the running maximum of exp_avg_sq. In
    torch's order: step_size = lr / (1 - beta1**t), denom = sqrt(exp_avg_sq) /
    sqrt(1 - beta2**t) + eps, x <- x - step_size * exp_avg / denom.

    Args:
        lr: Step size, > 0.
        beta1: Decay of the first moment, in [0, 1).
        beta2: Decay of the second moment, in [0, 1).
        eps: Added to the bias-corrected root, > 0.
        amsgrad: Use the running maximum of the second moment (bool).
        weight_decay: L2 coefficient; g <- g + weight_decay * x, as in torch.
    """
    hyper = _hyper("adam", lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
    amsgrad = _flag("amsgrad", amsgrad)

    def update(grad, state, x):
        g, beta1, beta2, xp = _l2(grad, state, x), state["beta1"], state["beta2"], namespace(grad)
        step = state["step"] + 1
        new = {"step": step, "exp_avg": _lerp(state["exp_avg"], g, 1 - beta1),
               "exp_avg_sq": beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g}
        if amsgrad:
            new["max_exp_avg_sq"] = xp.maximum(state["max_exp_avg_sq"], new["exp_avg_sq"])
        step_size = state["lr"] / (1 - beta1**step)
        second = new["max_exp_avg_sq"] if amsgrad else new["exp_avg_sq"]
        denom = xp.sqrt(second) / xp.sqrt(1 - beta2**step) + state["eps"]
        return -step_size * new["exp_avg"] / denom, {**state, **new}

    buffers = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
    return Optimizer("adam", _init(hyper, buffers, step=True), update)


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    f.__name__: f for f in (gd, momentum, nesterov, adagrad, rmsprop, adam)
}


def make_optimizer(name: str, **hyper) -> Optimizer:
    """Builds a registered optimizer after checking its name and hyper-parameters.

    Args:
        name: A key of OPTIMIZERS.
        **hyper: The factory's keywords; numeric ones are scalars or (B,) arrays.

    Returns:
        The Optimizer; its init broadcasts the hyper-parameters to x0's batch.

    Raises:
        ConfigError: Unknown name or keyword, or a value outside its valid range
            (key "optimizer.<keyword>"). The factories check values themselves,
            so calling OPTIMIZERS[name] directly raises the same errors.

    >>> make_optimizer("adam", lr=0.0)
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: optimizer.lr=0.0: must be finite and > 0
    """
    if name not in OPTIMIZERS:
        raise ConfigError("optimizer.name", name, f"unknown optimizer; known: {', '.join(OPTIMIZERS)}")
    valid = schema(OPTIMIZERS[name])
    for key, value in hyper.items():
        if key not in valid:
            raise ConfigError(f"optimizer.{key}", value, f"not a key of optimizer {name}; valid keys: {', '.join(valid)}")
    return OPTIMIZERS[name](**hyper)
