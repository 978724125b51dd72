"""Linear and logistic regression on a CSV file, a bundled data set, or seeded synthetic data.

The parameters are (w_1, ..., w_k, b) for the prediction X w + b, so a batch
of B parameter vectors gives B independent fits of the same data. Both take
mini-batches (``rows``): each run's loss and gradient over its own points.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from gdexp.core.data import SKLEARN_DATASETS, load_dataset, read_data_file, repeated_columns
from gdexp.core.errors import ConfigError
from gdexp.core.losses.base import Loss
from gdexp.core.resources import check_memory

# The bundled scikit-learn sets (gdexp.core.data.SKLEARN_DATASETS) each regression can fit:
# a regression target for the linear one, two classes for the logistic one.
BUNDLED = {"regression": ("diabetes",), "binary": ("breast_cancer",)}


@dataclass(frozen=True, eq=False, repr=False)
class _LinearModel(Loss):
    """Data shared by both regressions: the design matrix [X 1] and the targets."""

    flags_nonfinite_x: ClassVar[bool] = True

    features: np.ndarray
    targets: np.ndarray
    sha256: str | None = None
    source: str | None = None  # the CSV file's path or sklearn's loader: the run's MLflow dataset input
    # [X 1] transposed, one row per parameter: both einsums below then run their
    # inner loop along the n data points, which is what makes them fast.
    _columns: np.ndarray = field(init=False, repr=False)

    @property
    def n_data(self) -> int:
        """Data points a mini-batch is drawn from (``loss.batch_size``)."""
        return len(self.targets)

    def __post_init__(self):
        features = np.array(self.features, dtype=np.float64)
        targets = np.array(self.targets, dtype=np.float64)
        if features.ndim == 1:
            features = features[:, None]
        if features.ndim != 2 or targets.shape != (len(features),) or len(targets) < 2:
            raise ValueError(f"need features (n, k) and targets (n,) with n >= 2, "
                             f"got {features.shape} and {targets.shape}")
        columns = np.ascontiguousarray(np.vstack([features.T, np.ones(len(features))]))
        for name, array in (("features", features), ("targets", targets), ("_columns", columns)):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @property
    def dim(self) -> int:
        return len(self._columns)

    def __repr__(self) -> str:  # the data itself would flood logs
        return f"{type(self).__name__}(n={len(self.targets)}, dim={self.dim}, sha256={self.sha256!r})"

    def _points(self, rows) -> np.ndarray | None:
        """Each run's mini-batch of design rows, ``(B, m, dim)``, from ``rows`` ``(B, m)``; None = all points."""
        if rows is None:
            return None
        rows = np.asarray(rows)
        if rows.ndim != 2:
            raise ValueError(f"rows must be (B, m) indices, got shape {rows.shape}")
        return self._columns.T[rows]

    def _targets(self, rows) -> np.ndarray:
        """``(n,)`` every target, or each run's ``(B, m)``."""
        return self.targets if rows is None else self.targets[np.asarray(rows)]

    def _predict(self, w: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
        """(B, dim) parameters -> (B, n) linear predictions X w + b, or (B, m) on each run's points."""
        w = np.ascontiguousarray(w, dtype=np.float64)
        if points is not None:
            return np.einsum("bij,bj->bi", points, w)
        # einsum without `optimize` never calls BLAS, and on a C-contiguous batch it
        # sums each row in the same order whatever B is: rows stay bit-identical.
        return np.einsum("ji,bj->bi", self._columns, w)

    def _mean_over_data(self, per_point: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
        """(B, n) -> (B, dim): mean over the data of per_point * [X 1] (over each run's m points)."""
        if points is not None:
            return np.einsum("bij,bi->bj", points, per_point) / per_point.shape[1]
        return np.einsum("ij,bj->bi", self._columns, per_point) / len(self.targets)

    def default_init(self) -> np.ndarray:
        return np.zeros(self.dim)

    def data_sha256(self) -> str | None:
        return self.sha256

    def data_source(self) -> str | None:
        return self.source


@dataclass(frozen=True, eq=False, repr=False)
class LinearRegression(_LinearModel):
    """Mean squared error mean((X w + b - y)^2), without the conventional 1/2.

    Its Hessian is the constant (2/n) [X 1]^T [X 1], so the stability limit of
    gradient descent is known exactly.
    """

    name: ClassVar[str] = "linear_regression"
    _minimum: np.ndarray = field(init=False, repr=False)
    _extremes: tuple[float, float] = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        design = self._columns.T
        eig = np.linalg.eigvalsh(2.0 / len(design) * (design.T @ design))
        object.__setattr__(self, "_extremes", (float(eig[0]), float(eig[-1])))
        object.__setattr__(self, "_minimum", np.linalg.lstsq(design, self.targets, rcond=None)[0])

    def value(self, x: np.ndarray) -> np.ndarray:
        return self._value(self._residuals(x))

    def value_and_grad(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean squared errors ``(B,)`` and gradients ``(B, dim)``; with ``rows`` ``(B, m)``,
        each run's over its m points."""
        points = self._points(rows)
        r = self._residuals(x, points, rows)
        return self._value(r), 2.0 * self._mean_over_data(r, points)

    def _residuals(self, x: np.ndarray, points=None, rows=None) -> np.ndarray:
        r = self._predict(x, points)
        r -= self._targets(rows)  # in place: a (B, n) temporary costs more than the arithmetic
        return r

    def _value(self, r: np.ndarray) -> np.ndarray:
        return np.einsum("bi,bi->b", r, r) / r.shape[1]

    def minima(self) -> np.ndarray:
        return self._minimum[None, :].copy()

    def hessian_extremes(self) -> tuple[float, float]:
        return self._extremes


@dataclass(frozen=True, eq=False, repr=False)
class LogisticRegression(_LinearModel):
    """Mean binary cross-entropy of labels y in {0, 1} under p = sigmoid(X w + b)."""

    name: ClassVar[str] = "logistic_regression"

    def value(self, x: np.ndarray) -> np.ndarray:
        return self._value(*self._logits(x), self.targets)

    def value_and_grad(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean cross-entropies ``(B,)`` and gradients ``(B, dim)``; with ``rows`` ``(B, m)``,
        each run's over its m points."""
        points = self._points(rows)
        labels = self._targets(rows)
        z, tail = self._logits(x, points)
        return self._value(z, tail, labels), self._grad(z, tail, labels, points)

    def _logits(self, x: np.ndarray, points=None) -> tuple[np.ndarray, np.ndarray]:
        """Logits z and exp(-|z|), which never overflows and serves both value and grad."""
        z = self._predict(x, points)
        tail = np.abs(z)
        return z, np.exp(np.negative(tail, out=tail), out=tail)

    def _value(self, z: np.ndarray, tail: np.ndarray, labels: np.ndarray) -> np.ndarray:
        # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): np.logaddexp(0, z)'s stable form,
        # which costs about eight times as much.
        softplus = np.log1p(tail)
        softplus += np.maximum(z, 0.0)
        picked = np.einsum("bi,i->b", z, labels) if labels.ndim == 1 else np.einsum("bi,bi->b", z, labels)
        return (np.sum(softplus, axis=-1) - picked) / z.shape[1]

    def _grad(self, z: np.ndarray, tail: np.ndarray, labels: np.ndarray, points=None) -> np.ndarray:
        sigmoid = np.where(z >= 0.0, 1.0, tail)
        sigmoid /= 1.0 + tail
        sigmoid -= labels
        return self._mean_over_data(sigmoid, points)

    def minima(self) -> None:
        return None  # separable data has none; otherwise only a numerical solve finds it

    def hessian_extremes(self) -> None:
        return None


def linear_regression(data: str | None = None, x: str | Sequence[str] = "x", y: str = "y",
                      slope: float = 2.0, intercept: float = -1.0, noise: float = 0.1,
                      n: int = 100, seed: int = 0, dataset: str | None = None) -> LinearRegression:
    """Linear regression on the CSV file `data`, a bundled data set, or synthetic data.

    Args:
        data: Path of a CSV file with a header row; None (and no `dataset`) draws synthetic data.
        dataset: A bundled scikit-learn regression set (``diabetes``): every row,
            features and target standardized (gdexp.core.data.load_dataset with
            val_fraction=0), so the loss starts near 1 and lr grids carry over.
        x: The feature column, or a list of them (one weight each).
        y: The target column.
        slope, intercept, noise: Synthetic data only: y = slope x + intercept + noise N(0, 1).
        n: Synthetic data only: number of points, >= 2.
        seed: Synthetic data only: seed of np.random.default_rng.

    >>> linear_regression(n=10).dim
    2
    >>> diabetes = linear_regression(dataset="diabetes")
    >>> diabetes.n_data, diabetes.dim  # 442 patients; 10 features and the intercept
    (442, 11)
    """
    if dataset is not None:
        return LinearRegression(*_bundled(dataset, data, "regression"), f"sklearn.datasets.load_{dataset}")
    if data is not None:
        return LinearRegression(*_read_csv(data, x, y), str(data))
    _check_count(n, columns=3)  # the feature, the noise, the target
    _check_number("loss.slope", slope)
    _check_number("loss.intercept", intercept)
    _check_number("loss.noise", noise, at_least=0.0)
    rng = np.random.default_rng(seed)
    features = rng.standard_normal(n)
    targets = slope * features + intercept + noise * rng.standard_normal(n)
    return LinearRegression(features[:, None], targets)


def logistic_regression(data: str | None = None, x: str | Sequence[str] = ("x1", "x2"),
                        y: str = "y", n: int = 200, separation: float = 2.0,
                        seed: int = 0, dataset: str | None = None) -> LogisticRegression:
    """Logistic regression on the CSV file `data`, a bundled data set, or two synthetic Gaussian classes.

    Args:
        data: Path of a CSV file with a header row; None (and no `dataset`) draws synthetic data.
        dataset: A bundled scikit-learn set of two classes (``breast_cancer``, labels
            0 malignant, 1 benign): every row, features standardized.
        x: The feature column, or a list of them (one weight each).
        y: The label column; every value must be 0 or 1.
        n: Synthetic data only: number of points, >= 2, half of them in each class.
        separation: Synthetic data only: distance between the two class means,
            which sit at -+separation/2 along (1, 1)/sqrt(2) with unit variance.
        seed: Synthetic data only: seed of np.random.default_rng.

    >>> logistic_regression(dataset="breast_cancer").n_data
    569
    """
    if dataset is not None:
        return LogisticRegression(*_bundled(dataset, data, "binary"), f"sklearn.datasets.load_{dataset}")
    if data is not None:
        features, labels, sha256 = _read_csv(data, x, y)
        if not np.all((labels == 0) | (labels == 1)):
            found = ", ".join(f"{v:g}" for v in np.unique(labels)[:10])
            raise ConfigError("loss.y", y, f"labels must be 0 or 1; column {y!r} holds {found}")
        return LogisticRegression(features, labels, sha256, str(data))
    _check_count(n, columns=4)  # two features, their offsets, the label
    _check_number("loss.separation", separation, at_least=0.0)
    rng = np.random.default_rng(seed)
    labels = np.repeat([0.0, 1.0], [n // 2, n - n // 2])
    offsets = (labels - 0.5) * separation / math.sqrt(2.0)
    features = rng.standard_normal((n, 2)) + offsets[:, None]
    return LogisticRegression(features, labels)


def _bundled(name, data, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(features, targets, sha256) of a bundled set, all rows, standardized (see gdexp.core.data).

    kind: "regression" (linear regression's targets) or "binary" (two classes, coded 0 and 1).
    """
    fits = BUNDLED[kind]
    if data is not None:
        raise ConfigError("loss.data", data, f"loss.dataset={name!r} is set too; use one "
                          "(loss.dataset=null to fit a CSV file)")
    if name not in fits:
        what = "a regression" if kind == "regression" else "a two-class"
        known = f"; {name!r} is not" if name in SKLEARN_DATASETS else " (or loss.data=<path of a CSV file>)"
        raise ConfigError("loss.dataset", name, f"needs {what} data set: {', '.join(fits)}{known}")
    loaded = load_dataset(dataset=name, val_fraction=0.0)
    return loaded.x_train, loaded.y_train.astype(np.float64), loaded.sha256


def _read_csv(path, x, y) -> tuple[np.ndarray, np.ndarray, str]:
    """(features (n, k), targets (n,), sha256 of the file) from the named columns."""
    names = (x,) if isinstance(x, str) else tuple(x) if isinstance(x, Sequence) else ()
    if not names or not all(isinstance(name, str) for name in names) or len(set(names)) < len(names):
        raise ConfigError("loss.x", x, "must be a column name or a list of distinct column names")
    if not isinstance(y, str):
        raise ConfigError("loss.y", y, "must be one column name")
    if y in names:
        raise ConfigError("loss.y", y, "is also a feature column in loss.x")
    raw = read_data_file(path)  # a regular file of bounded size: no FIFO hang, no /dev/zero
    import pandas as pd  # only here: the numpy core should not pay its import time

    try:
        # Parse the very bytes that are hashed, so the checksum names what was fitted.
        frame = pd.read_csv(io.BytesIO(raw))
        header = next(csv.reader(io.StringIO(raw.decode("utf-8-sig").partition("\n")[0])), [])
    except (ValueError, csv.Error) as error:  # pandas' ParserError and EmptyDataError, UnicodeDecodeError
        raise ConfigError("loss.data", path, f"not a readable CSV file: {error}") from None
    repeated = repeated_columns(header)
    if repeated:  # pandas would rename the second `x` to `x.1` and fit the first one silently
        raise ConfigError("loss.data", path, f"repeats the column name(s) {', '.join(map(repr, repeated))} "
                          "in its header")
    used = [("loss.x", x, name) for name in names] + [("loss.y", y, y)]
    for key, value, column in used:
        if column not in frame.columns:
            existing = ", ".join(map(str, frame.columns))
            raise ConfigError(key, value, f"no column {column!r} in {path}; its columns are: {existing}")
    if len(frame) < 2:
        raise ConfigError("loss.data", path, f"has {len(frame)} data rows; need at least 2")
    for key, value, column in used:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ConfigError(key, value, f"column {column!r} in {path} is not numeric")
        if not np.all(np.isfinite(frame[column].to_numpy(np.float64))):
            raise ConfigError(key, value, f"column {column!r} in {path} has missing or infinite values")
    features, targets = frame[list(names)].to_numpy(np.float64), frame[y].to_numpy(np.float64)
    for key, value, column in used:
        top = float(np.max(np.abs(frame[column].to_numpy(np.float64))))
        if top > _LARGEST:  # its square, in the normal equations and the loss, overflows float64
            raise ConfigError(key, value, f"column {column!r} in {path} holds values up to {top:g}: above {_LARGEST:g} "
                              "their squares overflow float64 (the loss would be inf); rescale it")
    return features, targets, hashlib.sha256(raw).hexdigest()


_LARGEST = 1e150  # sqrt of float64's largest value (1.8e308) is 1.3e154; a margin for the sums


def _check_count(n, columns: int) -> None:
    """n synthetic points, an integer >= 2 whose float64 `columns` fit in memory (drawn, then
    held, and twice more while a batch of runs descends)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
        raise ConfigError("loss.n", n, "must be an integer >= 2")
    check_memory("loss.n", n, 3 * 8 * columns * n, "the synthetic data")


def _check_number(key: str, value, at_least: float | None = None) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (at_least is not None and value < at_least):
        raise ConfigError(key, value, "must be a finite number" + (f" >= {at_least:g}" if at_least is not None else ""))
