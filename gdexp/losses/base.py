"""What every loss provides: value and gradient over a batch of points."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Loss(Protocol):
    """A differentiable function of `dim` parameters, evaluated on a batch.

    Every method takes points of shape (B, dim), one row per run, so a whole
    learning-rate sweep descends in one vectorized loop. Each row's result
    must depend on that row alone (no reductions across the batch, no BLAS
    call whose rounding depends on B): a run gives bit-identical curves alone
    or inside any batch.
    """

    name: str
    dim: int

    def value(self, x: np.ndarray) -> np.ndarray:
        """(B, dim) -> (B,) loss values."""

    def grad(self, x: np.ndarray) -> np.ndarray:
        """(B, dim) -> (B, dim) gradients."""

    def value_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both at once, sharing work (residuals, intermediate terms)."""

    def default_init(self) -> np.ndarray:
        """(dim,) the start used when the config's `init` is null."""

    def minima(self) -> np.ndarray | None:
        """(k, dim) known global minimisers, or None where none is known."""

    def hessian_extremes(self) -> tuple[float, float] | None:
        """(lambda_min, lambda_max) of a constant Hessian, or None.

        Only losses with a constant Hessian (quadratics, linear regression)
        return values; they fix the stability limit of plain gradient descent,
        lr_max_stable = 2 / lambda_max, and its fastest rate,
        lr_optimal = 2 / (lambda_min + lambda_max).
        """

    def data_sha256(self) -> str | None:
        """Checksum of the data file the loss was built from, or None."""
