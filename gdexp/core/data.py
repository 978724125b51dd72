"""Data sets for the losses fitted to data: scikit-learn's bundled sets or a CSV file.

``load_dataset`` returns a ``Dataset``: numpy arrays split into a training and
a validation part, features standardized with the training part's statistics.

The rules, exactly:

- **Split.** With n rows, ``n_val = ceil(val_fraction * n)`` rows (the size
  ``sklearn.model_selection.train_test_split(test_size=val_fraction)`` takes)
  are the first ``n_val`` entries of ``np.random.default_rng(seed).permutation(n)``;
  the others train. Both parts keep the source's row order. ``val_fraction=0``
  keeps every row for training and has no validation part.
- **Standardization** (``standardize=True``). Each feature becomes
  ``(value - mean) / std`` with the training part's mean and population
  standard deviation (ddof=0), in both parts, as
  ``sklearn.preprocessing.StandardScaler`` fitted on the training part; a
  feature constant on the training part gets std 1. Regression targets are
  standardized the same way, so the loss starts near 1 (the mean squared error
  of predicting the mean) on every data set and one learning-rate grid fits
  them all; ``target_mean`` and ``target_scale`` convert back
  (an MSE in the data's units is ``mse * target_scale**2``).
- **Classes.** Classification targets become ``0..k-1`` in sorted order
  (numeric order for numbers, string order otherwise); ``classes`` keeps their
  names. scikit-learn's sets keep their own codes and ``target_names``.
- **Checksum.** ``sha256`` is the SHA-256 of the CSV file's bytes, or, for a
  bundled set, of scikit-learn's version, the set's name and its arrays, so it
  changes when a scikit-learn release changes the data.

numpy only at import time; scikit-learn is imported when a bundled set is loaded.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import math
import numbers
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gdexp.core.errors import ConfigError

__all__ = ["MAX_DATA_BYTES", "SKLEARN_DATASETS", "TASKS", "Dataset", "load_dataset", "read_data_file",
           "repeated_columns", "split_rows"]

#: The largest data file gdexp reads (256 MiB): parsed into Python lists first, a CSV takes
#: several times its size in memory. /dev/zero or a file grown by mistake fail at once.
MAX_DATA_BYTES = 256 * 2**20

#: scikit-learn's bundled data sets (``sklearn.datasets.load_<name>``) and their task.
SKLEARN_DATASETS = {
    "digits": "classification",        # 1,797 8x8 images, 64 features, 10 classes
    "iris": "classification",          # 150 flowers, 4 features, 3 classes
    "wine": "classification",          # 178 wines, 13 features, 3 classes
    "breast_cancer": "classification",  # 569 tumours, 30 features, 2 classes
    "diabetes": "regression",          # 442 patients, 10 features, disease progression
}
TASKS = ("classification", "regression")


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A data set split into training and validation parts (see the module docstring for the rules).

    Attributes:
        name: the bundled set's name, or the CSV file's path.
        task: "classification" or "regression".
        feature_names: ``(p,)`` column names.
        classes: the class names, in the order of the codes 0..k-1; None for regression.
        x_train: ``(n_train, p)`` float64 features.
        y_train: ``(n_train,)`` class codes (int64) or targets (float64).
        x_val, y_val: the validation part, ``(n_val, p)`` and ``(n_val,)``; n_val may be 0.
        train_rows, val_rows: each part's row indices in the source, ascending.
        feature_mean, feature_scale: ``(p,)`` what was subtracted and divided (0 and 1 when
            not standardized).
        target_mean, target_scale: the same for a regression target (0 and 1 otherwise).
        sha256: checksum of the source data.
    """

    name: str
    task: str
    feature_names: tuple[str, ...]
    classes: tuple[str, ...] | None
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    target_mean: float
    target_scale: float
    sha256: str

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_val(self) -> int:
        return len(self.y_val)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    def __repr__(self) -> str:  # the arrays would flood logs
        return (f"Dataset({self.name!r}, {self.task}, n_train={self.n_train}, n_val={self.n_val}, "
                f"features={self.n_features}, classes={self.n_classes}, sha256={self.sha256[:12]}...)")


def load_dataset(dataset: str | None = None, data: str | None = None, x: str | Sequence[str] | None = None,
                 y: str | None = None, task: str | None = None, val_fraction: float = 0.2, seed: int = 0,
                 standardize: bool = True) -> Dataset:
    """A bundled scikit-learn set or a CSV file, split and standardized.

    Args:
        dataset: a name in ``SKLEARN_DATASETS``; give it or ``data``, not both.
        data: path of a CSV file with a header row (names are stripped of surrounding blanks).
        x: CSV only: the feature column or list of columns; None = every column but ``y``.
        y: CSV only: the target column; None = "y".
        task: "classification" or "regression"; None = the bundled set's own, or for a CSV:
            classification when the target column is not numeric, regression when it holds
            non-integer numbers, and an error when it holds only integers (classes or counts?
            set it).
        val_fraction: share of the rows held out for validation, in [0, 1).
        seed: seed of the split's permutation (an int >= 0).
        standardize: standardize features, and regression targets, with the training statistics.

    Raises:
        ConfigError: one line naming the ``loss.<key>`` at fault.

    >>> iris = load_dataset("iris")
    >>> iris.n_train, iris.n_val, iris.classes
    (120, 30, ('setosa', 'versicolor', 'virginica'))
    >>> bool(np.allclose(iris.x_train.mean(axis=0), 0.0)), bool(np.allclose(iris.x_train.std(axis=0), 1.0))
    (True, True)
    """
    _check_val_fraction(val_fraction)
    _check_seed(seed)
    if not isinstance(standardize, bool):
        raise ConfigError("loss.standardize", standardize, "must be true or false")
    if task is not None and task not in TASKS:
        raise ConfigError("loss.task", task, f"must be one of: {', '.join(TASKS)} (or null: decided by the data)")
    if dataset is not None and data is not None:
        raise ConfigError("loss.data", data, f"loss.dataset={dataset!r} is set too; use one "
                          "(loss.dataset=null to fit a CSV file)")
    if data is not None:
        key, value, source = "loss.data", data, _read_csv(data, x, y, task)
    elif dataset is not None:
        key, value, source = "loss.dataset", dataset, _load_sklearn(dataset, x, y, task)
    else:
        raise ConfigError("loss.dataset", None, f"give a data set ({', '.join(SKLEARN_DATASETS)}) "
                          "or loss.data=<path of a CSV file>")
    train, val = split_rows(len(source.targets), val_fraction, seed)
    if len(train) < 2:
        raise ConfigError(key, value, f"has {len(source.targets)} rows: too few to keep 2 for training "
                          f"after a validation split of {val_fraction}")
    x_train, x_val = source.features[train], source.features[val]
    y_train, y_val = source.targets[train], source.targets[val]
    p = x_train.shape[1]
    mean, scale, target_mean, target_scale = np.zeros(p), np.ones(p), 0.0, 1.0
    if standardize:
        mean, scale = _mean_and_scale(x_train)
        x_train, x_val = (x_train - mean) / scale, (x_val - mean) / scale
        if source.task == "regression":
            target_mean, target_scale = (float(v[0]) for v in _mean_and_scale(y_train[:, None]))
            y_train, y_val = (y_train - target_mean) / target_scale, (y_val - target_mean) / target_scale
    arrays = {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val,
              "train_rows": train, "val_rows": val, "feature_mean": mean, "feature_scale": scale}
    for array in arrays.values():
        array.flags.writeable = False
    return Dataset(name=str(value), task=source.task, feature_names=source.feature_names,
                   classes=source.classes, target_mean=target_mean, target_scale=target_scale,
                   sha256=source.sha256, **arrays)


def split_rows(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of n rows, each ascending (see the module docstring).

    >>> split_rows(10, 0.2, seed=0)
    (array([0, 1, 2, 3, 5, 7, 8, 9]), array([4, 6]))
    """
    n_val = math.ceil(val_fraction * n)  # sklearn's train_test_split rounds the test part up too
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class _Source(NamedTuple):
    """A data set before the split: what each reader returns."""

    features: np.ndarray  # (n, p) float64
    targets: np.ndarray  # (n,) int64 class codes or float64 values
    feature_names: tuple[str, ...]
    classes: tuple[str, ...] | None
    task: str
    sha256: str


def _mean_and_scale(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and population std, a zero std replaced by 1 (as StandardScaler).

    Values near float64's limit (1e300) overflow the sum of squares: those columns are
    divided by their largest magnitude first, so their data is standardized, not zeroed.

    >>> _mean_and_scale(np.array([[1e300], [3e300]]))
    (array([2.e+300]), array([1.e+300]))
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean, scale = columns.mean(axis=0), columns.std(axis=0)
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
        top = np.max(np.abs(columns), axis=0)
        top[top == 0.0] = 1.0
        mean, scale = (columns / top).mean(axis=0) * top, (columns / top).std(axis=0) * top
    scale[scale == 0.0] = 1.0
    return mean, scale


def _load_sklearn(name, x, y, task) -> _Source:
    if name not in SKLEARN_DATASETS:
        raise ConfigError("loss.dataset", name, f"unknown data set; choose one of: {', '.join(SKLEARN_DATASETS)} "
                          "(or loss.data=<path of a CSV file>)")
    if x is not None:
        raise ConfigError("loss.x", x, f"picks CSV columns; the bundled set {name!r} uses all its features")
    if y is not None:
        raise ConfigError("loss.y", y, f"picks a CSV column; the bundled set {name!r} has its own target")
    own_task = SKLEARN_DATASETS[name]
    if task is not None and task != own_task:
        raise ConfigError("loss.task", task, f"{name!r} is a {own_task} data set")
    return _sklearn_source(name)


@functools.cache  # the arrays are read-only, so every caller can share them
def _sklearn_source(name: str) -> _Source:
    try:
        import sklearn
        from sklearn import datasets
    except ImportError:
        raise ConfigError("loss.dataset", name, "needs scikit-learn: pip install scikit-learn") from None
    # Diabetes in its original units (age in years, ...): standardization is ours to do.
    bunch = datasets.load_diabetes(scaled=False) if name == "diabetes" else getattr(datasets, f"load_{name}")()
    task = SKLEARN_DATASETS[name]
    features = np.ascontiguousarray(bunch.data, dtype="<f8")
    targets = np.ascontiguousarray(bunch.target, dtype="<i8" if task == "classification" else "<f8")
    digest = hashlib.sha256(f"scikit-learn {sklearn.__version__} load_{name} {features.shape}\n".encode())
    digest.update(features.tobytes())
    digest.update(targets.tobytes())
    classes = tuple(str(c) for c in bunch.target_names) if task == "classification" else None
    for array in (features, targets):
        array.flags.writeable = False
    return _Source(features, targets, tuple(map(str, bunch.feature_names)), classes, task, digest.hexdigest())


def _read_csv(path, x, y, task) -> _Source:
    raw = read_data_file(path)
    try:
        text = raw.decode("utf-8-sig")  # -sig: a spreadsheet's byte-order mark is not part of the first name
    except UnicodeDecodeError as error:
        raise ConfigError("loss.data", path, f"not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    try:
        table = [row for row in csv.reader(io.StringIO(text)) if row]  # blank lines hold no data
    except csv.Error as error:
        raise ConfigError("loss.data", path, f"not a readable CSV file: {error}") from None
    if not table:
        raise ConfigError("loss.data", path, "is empty; need a header row and data rows")
    header = [name.strip() for name in table[0]]
    repeated = repeated_columns(header)
    if repeated:
        raise ConfigError("loss.data", path, f"repeats the column name(s) {', '.join(map(repr, repeated))} in its header")
    rows = table[1:]
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ConfigError("loss.data", path, f"data row {line - 1} has {len(row)} fields; the header has {len(header)}")
    target, names = _columns(path, header, x, y)
    columns = {name: [row[header.index(name)].strip() for row in rows] for name in (*names, target)}
    features = np.empty((len(rows), len(names)))
    for j, name in enumerate(names):
        features[:, j] = _numbers(path, "loss.x", x, name, columns[name])
    values = columns[target]
    numeric = _as_numbers(values)
    if task is None:
        task = _guess_task(y, target, values, numeric)
    if task == "regression":
        if numeric is None:
            _numbers(path, "loss.y", y, target, values)  # raises, naming the first bad value
        targets, classes = _finite(path, "loss.y", y, target, numeric), None
    else:
        targets, classes = _class_codes(path, y, target, values, numeric)
    return _Source(features, targets, tuple(names), classes, task, hashlib.sha256(raw).hexdigest())


def read_data_file(path, key: str = "loss.data") -> bytes:
    """The bytes of a data file: a regular file (not a pipe or a device, which would hang or never
    end) of at most MAX_DATA_BYTES.

    Raises:
        ConfigError: naming `key`: not a path, no such file, not a regular file, too large, unreadable.

    >>> read_data_file("/dev/zero")
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: loss.data='/dev/zero': not a regular file (a device, a pipe or a folder); give a CSV file
    """
    if not isinstance(path, (str, Path)) or not str(path):
        raise ConfigError(key, path, "must be the path of a CSV file")
    file = Path(path)
    if not file.exists():
        raise ConfigError(key, path, "file not found")
    if not file.is_file():
        raise ConfigError(key, path, "not a regular file (a device, a pipe or a folder); give a CSV file")
    try:
        too_large = file.stat().st_size > MAX_DATA_BYTES
        with open(file, "rb") as handle:
            raw = b"" if too_large else handle.read(MAX_DATA_BYTES + 1)  # + 1: a file that grew meanwhile
    except OSError as error:
        raise ConfigError(key, path, f"cannot read: {error.strerror}") from None
    if too_large or len(raw) > MAX_DATA_BYTES:
        raise ConfigError(key, path, f"is larger than {MAX_DATA_BYTES // 2**20} MiB, the most gdexp reads "
                          "(gdexp.core.data.MAX_DATA_BYTES); sample it")
    return raw


def repeated_columns(header: list[str]) -> list[str]:
    """The names that occur more than once in a CSV header (blanks around names stripped).

    >>> repeated_columns(["x", "x ", "y"])
    ['x']
    """
    return [name for name, count in Counter(n.strip() for n in header).items() if count > 1]


def _columns(path, header, x, y) -> tuple[str, list[str]]:
    """The target column and the feature columns named by loss.y and loss.x."""
    target = "y" if y is None else y
    if not isinstance(target, str):
        raise ConfigError("loss.y", y, "must be one column name")
    if target not in header:
        raise ConfigError("loss.y", y, f"no column {target!r} in {path}; its columns are: {', '.join(header)}")
    if x is None:
        names = [name for name in header if name != target]
    elif isinstance(x, str):
        names = [x]
    elif isinstance(x, Sequence) and all(isinstance(name, str) for name in x):
        names = list(x)
    else:
        raise ConfigError("loss.x", x, "must be a column name, a list of column names, or null (every column but y)")
    if not names or len(set(names)) < len(names):
        raise ConfigError("loss.x", x, "must name at least one column, each once")
    if target in names:
        raise ConfigError("loss.x", x, f"holds the target column {target!r} (loss.y)")
    missing = [name for name in names if name not in header]
    if missing:
        raise ConfigError("loss.x", x, f"no column {missing[0]!r} in {path}; its columns are: {', '.join(header)}")
    return target, names


def _as_numbers(values: list[str]) -> np.ndarray | None:
    """The values as float64, or None when one of them is not a number."""
    try:
        return np.array([float(v) for v in values])
    except ValueError:
        return None


def _numbers(path, key, value, name, values) -> np.ndarray:
    numbers_ = _as_numbers(values)
    if numbers_ is None:
        row, bad = next((i, v) for i, v in enumerate(values, start=1) if not _is_number(v))
        raise ConfigError(key, value, f"column {name!r} in {path} is not numeric (data row {row}: {bad!r})")
    return _finite(path, key, value, name, numbers_)


def _finite(path, key, value, name, numbers_) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(numbers_))
    if bad.size:
        raise ConfigError(key, value, f"column {name!r} in {path} has a missing or infinite value "
                          f"(data row {bad[0] + 1})")
    return numbers_


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _guess_task(y, target, values, numeric) -> str:
    if numeric is None:
        return "classification"
    if np.all(np.isfinite(numeric) & (numeric == np.round(numeric))):
        raise ConfigError("loss.task", None, f"column {target!r} holds only integers ({len(set(values))} distinct): "
                          "set loss.task=classification or loss.task=regression")
    return "regression"


def _class_codes(path, y, target, values, numeric) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes 0..k-1 in sorted order of the classes, and the class names."""
    if any(v == "" for v in values):
        row = values.index("") + 1
        raise ConfigError("loss.y", y, f"column {target!r} in {path} has a missing value (data row {row})")
    if numeric is not None:
        _finite(path, "loss.y", y, target, numeric)
        kinds, codes = np.unique(numeric, return_inverse=True)
        classes = tuple(f"{v:g}" for v in kinds)
    else:
        kinds, codes = np.unique(np.array(values, dtype=object).astype(str), return_inverse=True)
        classes = tuple(str(v) for v in kinds)
    if len(classes) < 2:
        raise ConfigError("loss.y", y, f"column {target!r} in {path} holds one class ({classes[0]!r}); "
                          "classification needs at least 2")
    return codes.astype(np.int64), classes


def _check_val_fraction(value) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value < 1.0
    if not ok:
        raise ConfigError("loss.val_fraction", value, "must be a number in [0, 1) (0 = no validation split)")


def _check_seed(value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError("loss.seed", value, "must be an integer >= 0")
