"""Sharpness: the largest eigenvalue of each run's Hessian, from Hessian-vector products.

Cohen et al. 2021 ("Gradient Descent on Neural Networks Typically Occurs at
the Edge of Stability") track it against 2 / lr: under full-batch gradient
descent it rises until it hovers at 2 / lr. They compute it with the Lanczos
method, as here.

Method: Lanczos with full reorthogonalization on H, from a warm start.
Lanczos' top Ritz value converges to the largest *algebraic* eigenvalue,
whatever the most negative one is, and faster than power iteration
(Chebyshev-accelerated in the gap rather than the ratio |lambda_2 / lambda_1|;
Golub & Van Loan, Matrix Computations, 4th ed., 10.1). Power iteration
would return the eigenvalue of largest magnitude, which on Rosenbrock's
saddle regions is the negative one. Each row stops once the top Ritz pair's
residual ||H v - theta v|| = beta_j |s_j| is at most tol times the largest
|Ritz value| (for a symmetric H, an eigenvalue lies within the residual of
theta, and within residual^2 / gap once the top one is separated), or
when its Krylov space is the whole space. Like every Krylov method, it may
return another member of a tight cluster of top eigenvalues (an error up to
the cluster's width: 4e-5 relative on 100-D Rosenbrock, whose top five lie
within 0.4%), and where iters runs out first, lam is a lower bound.

Hessian-vector products are exact where the loss has a method `hvp(x, v)`
(JAX losses); otherwise central differences of gradients,
(g(x + h v) - g(x - h v)) / 2h with h = eps^(1/3) (1 + ||x||) / ||v||: the
truncation error is h^2 / 6 times the gradient's third derivative and the
rounding error about eps ||g|| / h, so the product is good to ~eps^(2/3)
~ 4e-11 relative on a well-scaled loss, and exact up to rounding on a
quadratic (Nocedal & Wright, Numerical Optimization, 2nd ed., 8.1). One
such product costs one gradient evaluation of a doubled batch.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Sharpness", "sharpness", "hessian_vector_product"]

# h's scale for central differences: eps^(1/3) balances truncation and rounding.
_FD_SCALE = np.finfo(np.float64).eps ** (1 / 3)

# Weight of a fixed random vector mixed into a warm start. A start inside an
# invariant subspace that misses the top eigenvector (an eigenvector of
# another eigenvalue, or a symmetric vector of a symmetric loss) keeps
# Lanczos out of it for good; the mixed-in part gives the top eigenvector a
# component to grow from. Measured along gradient-descent paths on
# Rosenbrock (dim 10 and 100, every 10 steps, tol 1e-6): 0 costs 6.3 and 8.7
# products per call, 0.01 7.2 and 9.6, 0.1 7.8 and 10.8; a cold start 8.8 and 13.4.
WARM_START_MIX = 0.01


class Sharpness(NamedTuple):
    """What `sharpness` returns, per row.

    Attributes:
        lam: (B,) the largest eigenvalue of each row's Hessian (nan where x or
            the products are not finite).
        v: (B, d) its unit eigenvector (the top Ritz vector): the next call's v0.
        hvps: (B,) int Hessian-vector products used, each one gradient
            evaluation of 2 points under central differences.
        converged: (B,) bool: the residual test passed, or the Krylov space is
            the whole space; where false (iters ran out), lam is a lower bound.
    """

    lam: np.ndarray
    v: np.ndarray
    hvps: np.ndarray
    converged: np.ndarray


def hessian_vector_product(loss, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(B, d) products H(x_r) v_r: `loss.hvp(x, v)` where the loss has it, else central differences.

    Args:
        loss: A gdexp Loss (its full-data gradient is used).
        x: (B, d) points.
        v: (B, d) directions; a zero row gives a zero product.

    >>> from gdexp.core.losses.quadratic import Quadratic
    >>> hessian_vector_product(Quadratic(eigenvalues=(2.0, 8.0)), np.ones((1, 2)), np.array([[1.0, 1.0]]))
    array([[2., 8.]])
    """
    if hasattr(loss, "hvp"):
        return loss.hvp(x, v)
    x = np.ascontiguousarray(x, dtype=np.float64)
    norm = np.sqrt(np.einsum("bi,bi->b", v, v))[:, None]
    h = _FD_SCALE * (1 + np.sqrt(np.einsum("bi,bi->b", x, x)))[:, None] / np.where(norm > 0, norm, 1)
    # One call on the doubled batch: each row's gradient is the same alone or stacked.
    g = loss.grad(np.concatenate([x + h * v, x - h * v]))
    b = len(x)
    return np.where(norm > 0, (g[:b] - g[b:]) / (2 * h), 0.0)


def sharpness(loss, x: np.ndarray, v0: np.ndarray | None = None, iters: int = 20,
              tol: float = 1e-6, preconditioner: np.ndarray | None = None) -> Sharpness:
    """The largest Hessian eigenvalue at each row of x, by Lanczos on Hessian-vector products.

    Each row's result depends on that row alone (its x and v0): bit-identical
    alone or in any batch.

    Args:
        loss: A gdexp Loss; exact products if it has `hvp(x, v)`.
        x: (B, d) points.
        v0: (B, d) warm starts, typically the previous call's `v`; None, or a
            zero or non-finite row, starts from a fixed random vector.
        iters: Lanczos steps at most (Hessian-vector products per row); capped at d.
        tol: Stop once the top Ritz residual is <= tol x the largest |Ritz value|.
        preconditioner: (B, d) the diagonal of P > 0, or None: then lam is the top eigenvalue
            of P^-1 H, computed as that of the symmetric P^-1/2 H P^-1/2 (the same spectrum),
            the preconditioned sharpness of Cohen et al. 2022 ("Adaptive Gradient Methods at
            the Edge of Stability"); v is then an eigenvector of the symmetric form.

    Returns:
        Sharpness(lam (B,), v (B, d), hvps (B,), converged (B,)).

    Cost: hvps per row (one gradient call on 2 points each with central
    differences) plus O(hvps^2 d) arithmetic for reorthogonalization, and
    min(iters, d) x B x d floats of memory for the Lanczos basis.

    >>> from gdexp.core.losses.quadratic import Quadratic
    >>> s = sharpness(Quadratic(eigenvalues=(1.0, 10.0, 100.0), rotate=True), np.ones((2, 3)))
    >>> np.round(s.lam, 9).tolist(), s.hvps.tolist()
    ([100.0, 100.0], [3, 3])
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    b, d = x.shape
    steps = max(1, min(int(iters), d))
    lam, vec = np.full(b, np.nan), np.full((b, d), np.nan)
    hvps, converged = np.zeros(b, dtype=np.int64), np.zeros(b, dtype=bool)

    basis = np.empty((steps, b, d))  # Lanczos vectors of the rows still running
    basis[0] = _start(v0, b, d)
    alphas, betas = np.zeros((b, steps)), np.zeros((b, steps))
    rows = np.arange(b)  # the batch rows still running, in order
    root = None if preconditioner is None else 1 / np.sqrt(np.asarray(preconditioner, dtype=np.float64))
    with np.errstate(all="ignore"):  # non-finite rows are data: they end as nan
        for j in range(steps):
            q = basis[j]
            w = hessian_vector_product(loss, x, q) if root is None else \
                root * hessian_vector_product(loss, x, root * q)
            hvps[rows] += 1
            alphas[:, j] = np.einsum("bi,bi->b", q, w)
            w = w - alphas[:, j, None] * q
            if j:
                w = w - betas[:, j - 1, None] * basis[j - 1]
            # Full reorthogonalization by Gram-Schmidt, twice (Kahan's "twice is
            # enough": Parlett, The Symmetric Eigenvalue Problem, 1980, 6-9), one
            # basis vector at a time: row-wise dot products and elementwise
            # updates keep rows independent.
            for _ in range(2):
                for k in range(j + 1):
                    w = w - np.einsum("bi,bi->b", basis[k], w)[:, None] * basis[k]
            betas[:, j] = np.sqrt(np.einsum("bi,bi->b", w, w))
            theta, s, scale = _top_ritz(alphas[:, :j + 1], betas[:, :j])
            small = betas[:, j] * np.abs(s[:, -1]) <= tol * scale
            done = small | ~np.isfinite(theta) | (j + 1 == steps)
            if done.any():
                lam[rows[done]] = theta[done]
                converged[rows[done]] = small[done] | (j + 1 == d)
                ritz = s[done, 0, None] * basis[0, done]
                for k in range(1, j + 1):
                    ritz = ritz + s[done, k, None] * basis[k, done]
                vec[rows[done]] = ritz / np.sqrt(np.einsum("bi,bi->b", ritz, ritz))[:, None]
                keep = ~done
                if not keep.any():
                    break
                rows, x, w = rows[keep], x[keep], w[keep]
                root = None if root is None else root[keep]
                basis, alphas, betas = basis[:, keep], alphas[keep], betas[keep]
            basis[j + 1] = w / betas[:, j, None]
    return Sharpness(lam, vec, hvps, converged)


def _top_ritz(alphas: np.ndarray, betas: np.ndarray):
    """The largest eigenpair of each row's Lanczos tridiagonal, and its largest |eigenvalue|.

    alphas: (n, m) diagonals; betas: (n, m - 1) off-diagonals. Returns theta
    (n,), s (n, m) and scale (n,). Non-finite rows give nan.
    """
    n, m = alphas.shape
    t = np.zeros((n, m, m))
    i = np.arange(m)
    t[:, i, i] = alphas
    t[:, i[:-1], i[1:]] = betas
    t[:, i[1:], i[:-1]] = betas
    finite = np.isfinite(t).all(axis=(1, 2))
    theta, s, scale = np.full(n, np.nan), np.full((n, m), np.nan), np.full(n, np.nan)
    if finite.any():
        # eigh runs LAPACK on each matrix of the stack alone: rows stay independent.
        values, vectors = np.linalg.eigh(t[finite])
        theta[finite], s[finite] = values[:, -1], vectors[:, :, -1]
        scale[finite] = np.maximum(np.abs(values[:, 0]), np.abs(values[:, -1]))
    return theta, s, scale


def _start(v0, b: int, d: int) -> np.ndarray:
    """(b, d) unit start vectors: v0's rows mixed with a fixed random vector, or that vector alone."""
    # The same vector for every row and every call, so results depend on a row alone.
    fixed = np.random.default_rng(0).standard_normal(d)
    fixed /= np.linalg.norm(fixed)
    if v0 is None:
        return np.broadcast_to(fixed, (b, d)).copy()
    v0 = np.asarray(v0, dtype=np.float64)
    if v0.shape != (b, d):
        raise ValueError(f"v0 must have x's shape {(b, d)}, got {v0.shape}")
    with np.errstate(all="ignore"):
        norm = np.sqrt(np.einsum("bi,bi->b", v0, v0))[:, None]
        start = v0 / norm + WARM_START_MIX * fixed
        start /= np.sqrt(np.einsum("bi,bi->b", start, start))[:, None]
    usable = np.isfinite(start).all(axis=1, keepdims=True) & (norm > 0)
    return np.where(usable, start, fixed)
