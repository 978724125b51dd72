"""The quadratic bowl: the one loss whose gradient-descent behaviour is known in closed form."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from gdexp.core.errors import ConfigError
from gdexp.core.losses.base import Loss


@dataclass(frozen=True)
class Quadratic(Loss):
    """f(x) = 1/2 (x - c)^T A (x - c) with A = Q diag(eigenvalues) Q^T.

    Q is the identity, or with `rotate` a random orthogonal matrix drawn from
    `seed`, so the valley's axes are not the coordinate axes.

    Args:
        eigenvalues: The Hessian's eigenvalues, one per dimension, finite and > 0.
        center: The minimiser c; None puts it at the origin.
        rotate: Rotate the eigenbasis away from the coordinate axes.
        seed: Seed of the rotation (used only with `rotate`).

    >>> q = Quadratic(eigenvalues=(1.0, 4.0))
    >>> q.value(np.array([[1.0, 1.0]]))
    array([2.5])
    """

    flags_nonfinite_x: ClassVar[bool] = True

    eigenvalues: tuple[float, ...] = (1.0, 10.0, 100.0)
    center: tuple[float, ...] | None = None
    rotate: bool = False
    seed: int = 0
    name: ClassVar[str] = "quadratic"
    _center: np.ndarray = field(init=False, repr=False, compare=False)
    _hessian: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        eig = _vector("loss.eigenvalues", self.eigenvalues)
        if eig.size == 0 or not np.all(eig > 0):
            raise ConfigError("loss.eigenvalues", self.eigenvalues, "need one or more eigenvalues, all > 0")
        if self.center is None:
            center = np.zeros_like(eig)
        else:
            center = _vector("loss.center", self.center)
            if center.shape != eig.shape:
                raise ConfigError("loss.center", self.center, f"needs {eig.size} coordinates, one per eigenvalue")
        if not isinstance(self.rotate, (bool, np.bool_)):
            raise ConfigError("loss.rotate", self.rotate, "must be true or false")
        hessian = np.diag(eig)
        if self.rotate:
            q = _random_rotation(eig.size, self.seed)
            hessian = (q * eig) @ q.T
            # Rounding leaves (q*eig) @ q.T a hair off symmetric; a Hessian is symmetric.
            hessian = (hessian + hessian.T) / 2
        # Normalised to tuples so equal configs compare and hash equal (Hydra hands in ListConfig).
        object.__setattr__(self, "eigenvalues", tuple(eig.tolist()))
        if self.center is not None:
            object.__setattr__(self, "center", tuple(center.tolist()))
        for name, array in (("_center", center), ("_hessian", hessian)):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @property
    def dim(self) -> int:
        return len(self.eigenvalues)

    def value(self, x: np.ndarray) -> np.ndarray:
        d, g = self._offset_and_grad(x)
        return 0.5 * np.sum(d * g, axis=-1)


    def value_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, g = self._offset_and_grad(x)
        return 0.5 * np.sum(d * g, axis=-1), g

    def _offset_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.ascontiguousarray(x, dtype=np.float64) - self._center
        # einsum without `optimize` never calls BLAS, and on a C-contiguous batch it
        # sums each row in the same order whatever B is: rows stay bit-identical.
        return d, np.einsum("ij,bj->bi", self._hessian, d)

    def default_init(self) -> np.ndarray:
        return self._center + 1.0

    def minima(self) -> np.ndarray:
        return self._center[None, :].copy()

    def hessian_extremes(self) -> tuple[float, float]:
        return min(self.eigenvalues), max(self.eigenvalues)



def _vector(key: str, value) -> np.ndarray:
    """A config list as a finite float vector, or ConfigError naming `key`."""
    try:
        vector = np.array(list(value), dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(key, value, "must be a list of numbers") from None
    if vector.ndim != 1 or not np.all(np.isfinite(vector)):
        raise ConfigError(key, value, "must be a list of finite numbers")
    return vector


def _random_rotation(dim: int, seed) -> np.ndarray:
    """A random orthogonal matrix, the same for the same seed on every machine."""
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ConfigError("loss.seed", seed, "must be an integer >= 0") from None
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    # QR leaves each column's sign to the LAPACK build; fixing diag(R) > 0 makes Q unique.
    return q * np.sign(np.diag(r))
