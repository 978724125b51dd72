"""Closed-form learning-rate limits of each optimizer on a loss with a constant Hessian.

numpy only. On a quadratic f(x) = x^T H x / 2 every optimizer gdexp ships
that is linear in the gradient (gd, momentum, nesterov) acts on each
eigen-direction of H on its own. Along an eigenvector with eigenvalue
lambda the gradient is lambda * x, and torch's L2 weight decay wd adds
wd * x: every optimizer sees lambda + wd in its place. Each method's state
along that direction is a vector s_t, and one step is s_{t+1} = M s_t with a
fixed matrix M (the companion matrix of the recurrence); the run converges
for every start iff the spectral radius of M is below 1 on every eigenvalue.

For a 2x2 M with trace T and determinant D the characteristic polynomial is
z^2 - T z + D, and both roots lie inside the unit circle iff (Jury's test,
the Schur-Cohn conditions for degree 2)

    |D| < 1,   1 - T + D > 0,   1 + T + D > 0.

Writing a = lr * lambda:

- gd: x' = (1 - a) x, a 1x1 M: |1 - a| < 1, so lr < 2 / lambda_max. The
  worst rate max(|1 - lr lambda_min|, |1 - lr lambda_max|) is least where both
  ends are equal: lr_optimal = 2 / (lambda_min + lambda_max).
- momentum (torch.optim.SGD: buf' = beta buf + (1 - dampening) g,
  x' = x - lr buf'), with s = (x, buf) and c = (1 - dampening):
  M = [[1 - c a, -lr beta], [c lambda, beta]], T = 1 + beta - c a, D = beta.
  |D| < 1 needs beta < 1; 1 - T + D = c a > 0 always; 1 + T + D > 0 gives
  lr < 2 (1 + beta) / (c lambda_max). For a given beta, the rate on lambda is
  sqrt(beta) while (1 + beta - c a)^2 < 4 beta (complex roots) and grows with
  |1 + beta - c a| beyond, so the worst rate over [lambda_min, lambda_max] is
  least where 1 + beta - c lr lambda is opposite at the two ends:
  lr_optimal = 2 (1 + beta) / (c (lambda_min + lambda_max)). At Polyak's
  momentum beta* = ((sqrt(L) - sqrt(mu)) / (sqrt(L) + sqrt(mu)))^2 this is
  Polyak's 4 / (c (sqrt(L) + sqrt(mu))^2) (Polyak 1964; with L = lambda_max,
  mu = lambda_min), and at beta = 0 gd's.
- nesterov (torch: buf' = beta buf + g, x' = x - lr (g + beta buf')), with
  s = (x, buf): M = [[1 - a (1 + beta), -lr beta^2], [lambda, beta]],
  T = 1 + beta - a (1 + beta), D = beta (1 - a). 1 - T + D = a > 0;
  1 + T + D > 0 gives a < 2 (1 + beta) / (1 + 2 beta), and there
  |D| = beta |1 - a| < 1 for beta < 1. So lr < 2 (1 + beta) / ((1 + 2 beta)
  lambda_max). Its worst rate is not least at a closed-form lr: no lr_optimal.
- adam, rmsprop, adagrad divide the step by a running root of the squared
  gradients, which shrinks as the iterates oscillate: the iteration is not
  linear, and no learning rate bounds its stability. What bounds it is the
  preconditioned sharpness (Cohen et al. 2022, "Adaptive Gradient Methods at
  the Edge of Stability"): the top eigenvalue of P^-1 H, P = diag(sqrt(v_hat)
  + eps), against (2 + 2 beta1) / ((1 - beta1) lr) for Adam (momentum beta1 on
  the preconditioned gradient, with the (1 - beta1) of its average), 2 / lr for
  RMSprop (2 (1 + momentum) / lr with its momentum buffer). `stability_threshold`
  gives these.

tests/core/test_stability.py checks every bound against bisection on the spectral
radius of M built from the optimizers' own update code.
"""
from __future__ import annotations

import math

__all__ = ["lr_max_stable", "lr_optimal", "momentum_optimal", "stability_threshold", "formula", "ADAPTIVE"]

# No fixed bound on the learning rate (see the module docstring).
ADAPTIVE = ("adam", "rmsprop", "adagrad")


# What each bound is, per optimizer, as the report and compare label it (lambda: + weight_decay).
FORMULAS = {
    "gd": {"lr_max_stable": "2/\u03bb_max", "lr_optimal": "2/(\u03bb_min+\u03bb_max)"},
    "momentum": {"lr_max_stable": "2(1+\u03b2)/((1-d)\u03bb_max)",
                 "lr_optimal": "2(1+\u03b2)/((1-d)(\u03bb_min+\u03bb_max))"},
    "nesterov": {"lr_max_stable": "2(1+\u03b2)/((1+2\u03b2)\u03bb_max)"},
}


def formula(name: str, bound: str) -> str:
    """How `bound` (lr_max_stable, lr_optimal) is computed for optimizer `name`, labelled with it.

    >>> formula("momentum", "lr_max_stable")
    'momentum: 2(1+\u03b2)/((1-d)\u03bb_max)'
    """
    return f"{name}: {FORMULAS.get(name, {}).get(bound, 'none')}"


def _shifted(hyper: dict, lam: float) -> float:
    return lam + float(hyper.get("weight_decay", 0.0) or 0.0)


def lr_max_stable(name: str, hyper: dict, lam_max: float) -> float | None:
    """The largest learning rate at which `name` converges on every eigen-direction.

    Args:
        name: an optimizer of gdexp.core.optimizers (gd, momentum, nesterov, ...).
        hyper: its hyper-parameters (momentum, dampening, weight_decay; defaults as torch's).
        lam_max: the Hessian's largest eigenvalue.

    Returns:
        The bound (exclusive): 2 / lam for gd, 2 (1 + beta) / ((1 - dampening) lam) for
        momentum, 2 (1 + beta) / ((1 + 2 beta) lam) for nesterov, lam = lam_max +
        weight_decay; math.inf where no learning rate is unstable (lam <= 0, dampening 1);
        0.0 where none is stable (momentum >= 1); None for the adaptive optimizers.

    >>> lr_max_stable("momentum", {"momentum": 0.9}, 50.0)
    0.076
    """
    if name in ADAPTIVE or name not in ("gd", "momentum", "nesterov"):
        return None
    lam = _shifted(hyper, lam_max)
    beta = float(hyper.get("momentum", 0.9)) if name != "gd" else 0.0
    if beta >= 1:
        return 0.0
    if name == "momentum":
        lam *= 1 - float(hyper.get("dampening", 0.0) or 0.0)
        lam /= 1 + beta
    elif name == "nesterov":
        lam *= (1 + 2 * beta) / (1 + beta)
    return 2.0 / lam if lam > 0 else math.inf


def lr_optimal(name: str, hyper: dict, lam_min: float, lam_max: float) -> float | None:
    """The learning rate whose worst convergence rate over [lam_min, lam_max] is least.

    2 / (lam_min + lam_max) for gd; 2 (1 + beta) / ((1 - dampening)(lam_min + lam_max))
    for momentum at its own beta (Polyak's 4 / (sqrt(L) + sqrt(mu))^2 at beta =
    momentum_optimal); each lam shifted by weight_decay. None for nesterov (no closed
    form), the adaptive optimizers, and where lam_min + weight_decay < 0 (no minimum).

    >>> lr_optimal("gd", {}, 1.0, 3.0)
    0.5
    """
    lo, hi = _shifted(hyper, lam_min), _shifted(hyper, lam_max)
    if name not in ("gd", "momentum") or lo < 0 or lo + hi <= 0:
        return None
    if name == "gd":
        return 2.0 / (lo + hi)
    beta, c = float(hyper.get("momentum", 0.9)), 1 - float(hyper.get("dampening", 0.0) or 0.0)
    if beta >= 1 or c <= 0:
        return None
    return 2.0 * (1 + beta) / (c * (lo + hi))


def momentum_optimal(hyper: dict, lam_min: float, lam_max: float) -> float | None:
    """Polyak's momentum ((sqrt(L) - sqrt(mu)) / (sqrt(L) + sqrt(mu)))^2, with L, mu the shifted
    extremes: the beta whose best rate, sqrt(beta), is the fastest heavy ball can reach.

    >>> round(momentum_optimal({}, 1.0, 100.0), 12)
    0.669421487603
    """
    lo, hi = _shifted(hyper, lam_min), _shifted(hyper, lam_max)
    if lo < 0 or hi <= 0:
        return None
    return ((math.sqrt(hi) - math.sqrt(lo)) / (math.sqrt(hi) + math.sqrt(lo))) ** 2


def stability_threshold(name: str, hyper: dict, lr):
    """The value an optimizer's sharpness is compared with at rate `lr` (scalar or array).

    gd 2 / lr; momentum 2 (1 + beta) / ((1 - dampening) lr); nesterov 2 (1 + beta) /
    ((1 + 2 beta) lr), each less weight_decay (the loss's sharpness plus wd is what the
    bound holds for); adam (2 + 2 beta1) /
    ((1 - beta1) lr) and rmsprop 2 (1 + momentum) / lr on the preconditioned sharpness
    (Cohen et al. 2022). None for adagrad (no edge of stability is known for it).

    `hyper` values may be (B,) arrays (per-row hyper-parameters).

    >>> stability_threshold("adam", {"beta1": 0.9}, 0.01)
    3800.0000000000005
    """
    get = lambda key, default: hyper.get(key, default) if hyper.get(key) is not None else default  # noqa: E731
    # The sharpness measured is the loss's; L2 weight decay adds wd to every eigenvalue.
    wd = get("weight_decay", 0.0)
    if name == "gd":
        return 2.0 / lr - wd
    if name == "momentum":
        beta = get("momentum", 0.9)
        return 2.0 * (1 + beta) / ((1 - get("dampening", 0.0)) * lr) - wd
    if name == "nesterov":
        beta = get("momentum", 0.9)
        return 2.0 * (1 + beta) / ((1 + 2 * beta) * lr) - wd
    if name == "adam":
        beta1 = get("beta1", 0.9)
        return (2.0 + 2.0 * beta1) / ((1 - beta1) * lr)
    if name == "rmsprop":
        return 2.0 * (1 + get("momentum", 0.0)) / lr
    return None
