"""The classic optimisation test functions: Rosenbrock, Himmelblau, Beale, Booth, Rastrigin."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from gdexp.core.errors import ConfigError
from gdexp.core.losses.base import Loss


@dataclass(frozen=True)
class Rosenbrock(Loss):
    """sum_i b (x_{i+1} - x_i^2)^2 + (a - x_i)^2: a curved, narrow valley.

    Args:
        a: Where the valley bottoms out: the minimum is at (a, a^2) in 2-D.
        b: Steepness of the valley walls, > 0; the classic 100 makes the
            Hessian's condition number about 2500 at the minimum.
        dim: Number of coordinates, >= 2.

    >>> Rosenbrock().value(np.array([[1.0, 1.0], [0.0, 0.0]]))
    array([0., 1.])
    """

    flags_nonfinite_x: ClassVar[bool] = True

    a: float = 1.0
    b: float = 100.0
    dim: int = 2
    name: ClassVar[str] = "rosenbrock"

    def __post_init__(self):
        _check_number("loss.a", self.a)
        _check_number("loss.b", self.b, positive=True)
        _check_dim(self.dim, minimum=2)

    def value(self, x: np.ndarray) -> np.ndarray:
        return self._value(*self._terms(x))


    def value_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.dim == 2:
            return self._value_and_grad_2d(x)
        terms = self._terms(x)
        return self._value(*terms), self._grad(*terms)

    def _value_and_grad_2d(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The n-D code below on 1-D columns: the same operations in the same
        # order, so bit-identical (tests/core/test_descent.py checks it), without the
        # (B, 1) slices, the sum over a length-1 axis and the zeros_like that
        # cost a 2-D sweep's descent about a third of its time.
        x = np.ascontiguousarray(x, dtype=np.float64)
        u, v = x[:, 0], x[:, 1]
        wall = v - u * u
        floor = self.a - u
        pull = 2.0 * self.b * wall
        g = np.empty_like(x)
        g[:, 0] = -2.0 * (pull * u + floor)
        # 0 + pull, as the n-D code's zeros += pull: it turns a -0.0 into +0.0.
        np.add(0.0, pull, out=g[:, 1])
        # b * wall^2 + floor^2 is never -0.0 (b > 0), so the n-D code's sum over
        # one term (which adds it to +0.0) changes nothing.
        return self.b * wall * wall + floor * floor, g

    def _terms(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float64)
        head = x[:, :-1]
        return x, x[:, 1:] - head * head, self.a - head

    def _value(self, x: np.ndarray, wall: np.ndarray, floor: np.ndarray) -> np.ndarray:
        return np.sum(self.b * wall * wall + floor * floor, axis=-1)

    def _grad(self, x: np.ndarray, wall: np.ndarray, floor: np.ndarray) -> np.ndarray:
        pull = 2.0 * self.b * wall
        g = np.zeros_like(x)
        g[:, :-1] = -2.0 * (pull * x[:, :-1] + floor)
        g[:, 1:] += pull
        return g

    def default_init(self) -> np.ndarray:
        # The textbook start on the far side of the valley's bend.
        return np.resize(np.array([-1.5, 2.0]), self.dim)

    def minima(self) -> np.ndarray | None:
        if self.dim == 2:
            return np.array([[self.a, self.a * self.a]], dtype=np.float64)
        if self.a == 1:
            return np.ones((1, self.dim))
        return None  # in n-D only a = 1 puts every term's zero at one known point


@dataclass(frozen=True)
class Himmelblau(Loss):
    """(x^2 + y - 11)^2 + (x + y^2 - 7)^2: four minima of equal value 0."""

    flags_nonfinite_x: ClassVar[bool] = True

    dim: ClassVar[int] = 2
    name: ClassVar[str] = "himmelblau"

    def value(self, x: np.ndarray) -> np.ndarray:
        _, _, p, q = self._terms(x)
        return p * p + q * q


    def value_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u, v, p, q = self._terms(x)
        return p * p + q * q, self._grad(u, v, p, q)

    @staticmethod
    def _terms(x: np.ndarray) -> tuple[np.ndarray, ...]:
        u, v = np.ascontiguousarray(x, dtype=np.float64).T
        return u, v, u * u + v - 11.0, u + v * v - 7.0

    @staticmethod
    def _grad(u, v, p, q) -> np.ndarray:
        return np.stack((4.0 * u * p + 2.0 * q, 2.0 * p + 4.0 * v * q), axis=-1)

    def default_init(self) -> np.ndarray:
        return np.zeros(2)

    def minima(self) -> np.ndarray:
        # (3, 2), and three roots of p = q = 0 with no simple closed form: Newton's
        # method from the rounded textbook values, converged to the nearest doubles.
        return np.array([
            [3.0, 2.0],
            [-2.805118086952745, 3.131312518250573],
            [-3.779310253377747, -3.2831859912861696],
            [3.5844283403304917, -1.8481265269644036],
        ])


@dataclass(frozen=True)
class Beale(Loss):
    """sum_k (c_k - x + x y^k)^2 for c = (1.5, 2.25, 2.625): flat plateaus, sharp ridges."""

    flags_nonfinite_x: ClassVar[bool] = True

    dim: ClassVar[int] = 2
    name: ClassVar[str] = "beale"

    def value(self, x: np.ndarray) -> np.ndarray:
        _, _, _, r1, r2, r3 = self._terms(x)
        return r1 * r1 + r2 * r2 + r3 * r3


    def value_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        terms = self._terms(x)
        r1, r2, r3 = terms[3:]
        return r1 * r1 + r2 * r2 + r3 * r3, self._grad(*terms)

    @staticmethod
    def _terms(x: np.ndarray) -> tuple[np.ndarray, ...]:
        u, v = np.ascontiguousarray(x, dtype=np.float64).T
        v2 = v * v
        return u, v, v2, 1.5 - u + u * v, 2.25 - u + u * v2, 2.625 - u + u * v2 * v

    @staticmethod
    def _grad(u, v, v2, r1, r2, r3) -> np.ndarray:
        du = r1 * (v - 1.0) + r2 * (v2 - 1.0) + r3 * (v2 * v - 1.0)
        dv = u * (r1 + 2.0 * r2 * v + 3.0 * r3 * v2)
        return np.stack((2.0 * du, 2.0 * dv), axis=-1)

    def default_init(self) -> np.ndarray:
        return np.array([1.0, 1.5])

    def minima(self) -> np.ndarray:
        return np.array([[3.0, 0.5]])


@dataclass(frozen=True)
class Booth(Loss):
    """(x + 2y - 7)^2 + (2x + y - 5)^2: a tilted quadratic bowl, Hessian [[10, 8], [8, 10]]."""

    flags_nonfinite_x: ClassVar[bool] = True

    dim: ClassVar[int] = 2
    name: ClassVar[str] = "booth"

    def value(self, x: np.ndarray) -> np.ndarray:
        p, q = self._terms(x)
        return p * p + q * q


    def value_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, q = self._terms(x)
        return p * p + q * q, self._grad(p, q)

    @staticmethod
    def _terms(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u, v = np.ascontiguousarray(x, dtype=np.float64).T
        return u + 2.0 * v - 7.0, 2.0 * u + v - 5.0

    @staticmethod
    def _grad(p, q) -> np.ndarray:
        return np.stack((2.0 * p + 4.0 * q, 4.0 * p + 2.0 * q), axis=-1)

    def default_init(self) -> np.ndarray:
        return np.zeros(2)

    def minima(self) -> np.ndarray:
        return np.array([[1.0, 3.0]])

    def hessian_extremes(self) -> tuple[float, float]:
        return 2.0, 18.0  # eigenvalues of [[10, 8], [8, 10]]


@dataclass(frozen=True)
class Rastrigin(Loss):
    """A d + sum_i (x_i^2 - A cos(2 pi x_i)): a bowl covered in regular local minima.

    Computed as sum_i x_i^2 + 2 A sin(pi x_i)^2, the same function without the
    cancellation of A d against A cos near the minimum.

    Args:
        A: Height of the ripples, > 0.
        dim: Number of coordinates, >= 1.
    """

    flags_nonfinite_x: ClassVar[bool] = True

    A: float = 10.0
    dim: int = 2
    name: ClassVar[str] = "rastrigin"

    def __post_init__(self):
        _check_number("loss.A", self.A, positive=True)
        _check_dim(self.dim, minimum=1)

    def value(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        sin = np.sin(np.pi * x)
        return np.sum(x * x + 2.0 * self.A * sin * sin, axis=-1)

    def grad(self, x: np.ndarray) -> np.ndarray:
        return 2.0 * x + 2.0 * np.pi * self.A * np.sin(2.0 * np.pi * x)

    def value_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Value and gradient share no transcendental term: one each is the least work.
        return self.value(x), self.grad(x)

    def default_init(self) -> np.ndarray:
        # Just past the local minimum near 2 in every coordinate: plain descent with a small
        # step is trapped there, which is what this loss is for.
        return np.full(self.dim, 2.2)

    def minima(self) -> np.ndarray:
        return np.zeros((1, self.dim))


def _check_number(key: str, value, positive: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        raise ConfigError(key, value, "must be a finite number" + (" > 0" if positive else ""))


def _check_dim(value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError("loss.dim", value, f"must be an integer >= {minimum}")
