"""The loss base class: what every loss provides, and the defaults most losses share."""
from __future__ import annotations

import numpy as np


class Loss:
    """A differentiable function of ``dim`` parameters, evaluated on a batch of points.

    Every method takes points of shape ``(B, dim)``, one row per run, so a whole
    learning-rate sweep descends in one vectorized loop. Each row's result
    must depend on that row alone (no reductions across the batch, no BLAS
    call whose rounding depends on B): a run gives bit-identical curves alone
    or inside any batch.

    A subclass writes three things: ``dim`` (a field or property),
    ``value_and_grad`` and ``default_init``. It may override ``value`` or
    ``grad`` where one alone is cheaper, and ``minima``,
    ``hessian_extremes``, ``data_sha256`` and ``param_names`` where it knows them.
    Losses fitted to data also set ``n_data`` and accept ``rows`` (see
    ``value_and_grad``) so mini-batches can be drawn from them.

    >>> class Bowl(Loss):
    ...     dim = 2
    ...     def value_and_grad(self, x, rows=None):
    ...         return 0.5 * np.einsum("bi,bi->b", x, x), x.copy()
    ...     def default_init(self):
    ...         return np.ones(2)
    >>> Bowl().value(np.array([[3.0, 4.0]]))
    array([12.5])
    >>> Bowl().param_names
    ('x[0]', 'x[1]')
    """

    #: Short name used in run names and tables (``loss.name``); subclasses set it.
    name: str = "loss"
    #: Number of parameters (the width of x).
    dim: int
    #: Data points a mini-batch can be drawn from; None for a loss without data.
    n_data: int | None = None
    #: True when a non-finite parameter always makes the loss or its gradient non-finite
    #: (tests/core/test_descent.py checks the losses that claim it): the descent's cheap screen
    #: then needs not look at x. Otherwise (tanh saturates) it checks x too.
    flags_nonfinite_x: bool = False

    def value_and_grad(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Loss values and gradients of a batch of points, sharing the work between them.

        Args:
            x: ``(B, dim)`` float64 points, one row per run.
            rows: for a loss with data (``n_data`` set): ``(B, m)`` int indices of the
                data points each row's mini-batch uses; None = all of them. Losses
                without data ignore it.

        Returns:
            ``(values (B,), gradients (B, dim))``, float64.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement value_and_grad")

    def value(self, x: np.ndarray) -> np.ndarray:
        """``(B, dim) -> (B,)`` loss values."""
        return self.value_and_grad(x)[0]

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``(B, dim) -> (B, dim)`` gradients."""
        return self.value_and_grad(x)[1]

    def default_init(self) -> np.ndarray:
        """``(dim,)`` the start used when the config's ``init`` is null."""
        raise NotImplementedError(f"{type(self).__name__} must implement default_init")

    def minima(self) -> np.ndarray | None:
        """``(k, dim)`` known global minimisers, or None where none is known."""
        return None

    def hessian_extremes(self) -> tuple[float, float] | None:
        """``(lambda_min, lambda_max)`` of a constant Hessian, or None.

        Only losses with a constant Hessian (quadratics, linear regression)
        return values; they fix the stability limit of plain gradient descent,
        ``lr_max_stable = 2 / lambda_max``, and its fastest worst-case rate,
        ``lr_optimal = 2 / (lambda_min + lambda_max)`` (Nesterov 2004, Thm 2.1.15).
        """
        return None

    def data_sha256(self) -> str | None:
        """SHA-256 of the data file the loss was built from, or None."""
        return None

    def data_source(self) -> str | None:
        """Where the loss's data came from (a file's path, ``sklearn.datasets.load_digits``), or None
        for a loss without data or with synthetic data (its seed in the config fixes it)."""
        return None

    @property
    def param_names(self) -> tuple[str, ...]:
        """A name per parameter, for curve.parquet's columns and plot axes."""
        return tuple(f"x[{i}]" for i in range(self.dim))
