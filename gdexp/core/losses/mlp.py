"""A multilayer perceptron on a data set, its parameters one flat vector per run.

The network is torch's ``nn.Sequential(nn.Linear(p, h1), act, ..., nn.Linear(h_last, k))``
with ``nn.CrossEntropyLoss()`` (mean over points) for classes or ``nn.MSELoss()``
(mean over points, no 1/2) for a regression target (k = 1).

Parameter layout: layer by layer, the weight ``W`` of shape ``(out, in)``
(torch's ``nn.Linear.weight``) row-major, then the bias ``b`` of shape ``(out,)``:
exactly ``torch.nn.utils.parameters_to_vector(model.parameters())``.
"""
# Kept whole (over ~300 lines): one network: forward and backward in torch's order, and its checks.
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np

from gdexp.core.data import Dataset, load_dataset
from gdexp.core.errors import ConfigError
from gdexp.core.losses.base import Loss
from gdexp.core.resources import check_memory, point_bytes

__all__ = ["ACTIVATIONS", "MLP", "mlp"]

#: Hidden-layer activations, each initialized as torch.nn.init recommends for it.
ACTIVATIONS = ("tanh", "relu", "sigmoid")

# Runs are processed in chunks whose activations (chunk x points x widths
# doubles) stay within about this many bytes: small enough to stay in cache
# between the forward and the backward pass, large enough that numpy's
# per-call overhead is paid on many runs at once.
_CHUNK_BYTES = 2 << 20


@dataclass(frozen=True, eq=False, repr=False)
class MLP(Loss):
    """Mean cross-entropy (classes) or mean squared error (regression) of an MLP on ``data``.

    Every run (row of x) is its own network on the same data. Rows never mix:
    each run's forward and backward pass are their own BLAS calls (numpy's
    stacked matmul calls one gemm per matrix of the stack) and elementwise
    operations, so a run's value and gradient are bit-identical alone or in
    any batch.

    Attributes:
        data: the training (and validation) data.
        hidden: widths of the hidden layers; () is a linear model.
        activation: one of ``ACTIVATIONS``, applied after every hidden layer.
        init_seed: seed of ``default_init``.
    """

    data: Dataset
    hidden: tuple[int, ...] = (64,)
    activation: str = "tanh"
    init_seed: int = 0

    name: ClassVar[str] = "mlp"
    # (weight slice, bias slice, fan_in, fan_out) of each layer in the flat vector.
    _layers: tuple = field(init=False, repr=False)
    # Each part's features transposed, (p, n), as the forward pass reads them.
    _transposed: dict = field(init=False, repr=False)

    def __post_init__(self):
        outputs = 1 if self.data.task == "regression" else self.data.n_classes
        widths = (self.data.n_features, *self.hidden, outputs)
        layers, start = [], 0
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            weight = slice(start, start + fan_out * fan_in)
            bias = slice(weight.stop, weight.stop + fan_out)
            layers.append((weight, bias, fan_in, fan_out))
            start = bias.stop
        object.__setattr__(self, "_layers", tuple(layers))
        object.__setattr__(self, "_transposed", {
            part: np.ascontiguousarray(getattr(self.data, f"x_{part}").T) for part in ("train", "val")})

    @property
    def dim(self) -> int:
        return self._layers[-1][1].stop

    @property
    def n_data(self) -> int:
        return self.data.n_train

    def __repr__(self) -> str:
        return (f"MLP({self.data.name!r}, hidden={self.hidden}, activation={self.activation!r}, "
                f"dim={self.dim})")

    def data_source(self) -> str:
        from gdexp.core.data import SKLEARN_DATASETS

        name = self.data.name
        return f"sklearn.datasets.load_{name}" if name in SKLEARN_DATASETS else name

    def data_sha256(self) -> str:
        return self.data.sha256

    @cached_property
    def param_names(self) -> tuple[str, ...]:
        """``W{l}[o,i]`` (layer l's weight from input i to unit o) and ``b{l}[o]``, layers from 1."""
        names = []
        for layer, (_, _, fan_in, fan_out) in enumerate(self._layers, start=1):
            names += [f"W{layer}[{o},{i}]" for o in range(fan_out) for i in range(fan_in)]
            names += [f"b{layer}[{o}]" for o in range(fan_out)]
        return tuple(names)

    def default_init(self) -> np.ndarray:
        """Weights uniform in [-bound, bound] from ``init_seed``, biases 0; the same for every run.

        The bound is torch.nn.init's for the activation, with fan_in and fan_out of
        an ``(out, in)`` weight as ``torch.nn.init._calculate_fan_in_and_fan_out``:

        - tanh, sigmoid: ``xavier_uniform_(w)`` (Glorot & Bengio 2010, gain 1):
          ``bound = sqrt(6 / (fan_in + fan_out))``;
        - relu: ``kaiming_uniform_(w, nonlinearity="relu")`` (He et al. 2015, mode fan_in):
          ``bound = sqrt(2) * sqrt(3 / fan_in)``.

        Every layer, the output layer too, uses the activation's rule. Draws
        ``np.random.default_rng(init_seed).uniform(-bound, bound, (out, in))`` layer by layer.
        """
        rng = np.random.default_rng(self.init_seed)
        x = np.zeros(self.dim)
        for weight, _, fan_in, fan_out in self._layers:
            bound = init_bound(self.activation, fan_in, fan_out)
            x[weight] = rng.uniform(-bound, bound, (fan_out, fan_in)).ravel()
        return x

    def value_and_grad(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss over the training points (or each row's mini-batch) and its gradient.

        Args:
            x: ``(B, dim)`` parameters, one network per row.
            rows: ``(B, m)`` indices into the training points: row b's loss is the mean
                over its m points. None = all ``n_data`` training points.

        Returns:
            ``(values (B,), gradients (B, dim))`` by backpropagation.
        """
        x = np.ascontiguousarray(x, dtype=np.float64)
        f, g = np.empty(len(x)), np.empty(x.shape)
        with np.errstate(over="ignore", invalid="ignore"):
            for chunk, inputs, targets in self._chunks(x, "train", rows):
                f[chunk] = self._backprop(x[chunk], inputs, targets, g[chunk])
        return f, g

    def value(self, x: np.ndarray) -> np.ndarray:
        return self._evaluate(x, "train")[0]

    def eval_metrics(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Full-data metrics of each run, for logging every few steps: name -> ``(B,)``.

        ``train_loss`` (equal to ``value(x)``) and, when there is a validation split,
        ``val_loss``; for classes also ``train_accuracy`` and ``val_accuracy``
        (share of points whose largest logit is their class; ties go to the
        lower class, as ``argmax``).
        """
        metrics = {}
        for part in ("train", "val") if self.data.n_val else ("train",):
            loss, accuracy = self._evaluate(x, part)
            metrics[f"{part}_loss"] = loss
            if accuracy is not None:
                metrics[f"{part}_accuracy"] = accuracy
        return metrics

    def _evaluate(self, x, part: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(mean losses (B,), accuracies (B,) or None for regression) on the part's points."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        loss = np.empty(len(x))
        accuracy = np.empty(len(x)) if self.data.task == "classification" else None
        with np.errstate(over="ignore", invalid="ignore"):
            for chunk, inputs, targets in self._chunks(x, part, None):
                logits = self._forward(x[chunk], inputs[1])[-1]
                if accuracy is not None:
                    accuracy[chunk] = np.mean(np.argmax(logits, axis=1) == targets, axis=1)
                loss[chunk] = self._output_loss(logits, targets, want_grad=False)
        return loss, accuracy

    def _chunks(self, x, part: str, rows):
        """Per chunk of runs: (its slice, (inputs, inputs transposed), targets).

        Inputs are ``(n, p)`` and ``(p, n)`` shared by every run, or with rows
        each run's own ``(c, m, p)`` and ``(c, p, m)``; targets ``(n,)`` or ``(c, m)``.
        """
        inputs = (getattr(self.data, f"x_{part}"), self._transposed[part])
        targets = getattr(self.data, f"y_{part}")
        if rows is not None:
            rows = np.asarray(rows)
            if rows.ndim != 2 or len(rows) != len(x):
                raise ValueError(f"rows must be (B, m) = ({len(x)}, m) indices, got shape {rows.shape}")
        points = len(targets) if rows is None else rows.shape[1]
        size = max(1, _CHUNK_BYTES // (8 * points * (sum(self.hidden) + self._layers[-1][3])))
        for start in range(0, len(x), size):
            chunk = slice(start, start + size)
            if rows is None:
                yield chunk, inputs, targets
            else:
                picked = inputs[0][rows[chunk]]
                yield chunk, (picked, picked.transpose(0, 2, 1)), targets[rows[chunk]]

    def _weights(self, w: np.ndarray):
        """Each layer's ``(c, out, in)`` weights and ``(c, out)`` biases, views of w."""
        for weight, bias, fan_in, fan_out in self._layers:
            yield w[:, weight].reshape(len(w), fan_out, fan_in), w[:, bias]

    # Activations are kept transposed, (c, width, n): every matmul below then reads
    # and writes row-major blocks, and the softmax's and the biases' sums run along
    # contiguous memory (tried against (c, n, width): 20-25% faster on digits).
    def _forward(self, w: np.ndarray, inputs_t: np.ndarray) -> list[np.ndarray]:
        """Every hidden layer's activations ``(c, width, n)``, then the logits ``(c, k, n)``."""
        outputs, h = [], inputs_t
        last = len(self._layers) - 1
        for layer, (weight, bias) in enumerate(self._weights(w)):
            z = np.matmul(weight, h)
            z += bias[:, :, None]
            if layer < last:
                _ACTIVATE[self.activation](z)
            outputs.append(z)
            h = z
        return outputs

    def _backprop(self, w: np.ndarray, inputs, targets, grad: np.ndarray) -> np.ndarray:
        """Mean losses ``(c,)`` of the chunk w ``(c, dim)``; gradients written into grad ``(c, dim)``."""
        outputs = self._forward(w, inputs[1])
        loss, delta = self._output_loss(outputs[-1], targets, want_grad=True)
        weights = list(self._weights(w))
        grads = list(self._weights(grad))
        for layer in range(len(self._layers) - 1, -1, -1):
            below = outputs[layer - 1].transpose(0, 2, 1) if layer else inputs[0]
            grad_weight, grad_bias = grads[layer]
            np.matmul(delta, below, out=grad_weight)
            np.sum(delta, axis=2, out=grad_bias)
            if layer:
                delta = np.matmul(weights[layer][0].transpose(0, 2, 1), delta)
                delta *= _DERIVATIVE[self.activation](outputs[layer - 1])
        return loss

    def _output_loss(self, logits: np.ndarray, targets: np.ndarray, want_grad: bool):
        """Mean loss ``(c,)`` of the logits ``(c, k, n)``, and with want_grad its gradient
        with respect to them, computed in the logits' own memory."""
        n = logits.shape[2]
        if self.data.task == "regression":
            residual = logits[:, 0] - targets
            loss = np.einsum("bi,bi->b", residual, residual) / n
            if want_grad:
                np.multiply(residual, 2.0 / n, out=logits[:, 0])
            return (loss, logits) if want_grad else loss
        # log-softmax shifted by each point's largest logit: exp never overflows (log-sum-exp).
        logits -= logits.max(axis=1, keepdims=True)
        labels = np.broadcast_to(targets, (len(logits), n))[:, None, :]
        picked = np.take_along_axis(logits, labels, axis=1)[:, 0]
        np.exp(logits, out=logits)
        total = logits.sum(axis=1)
        loss = (np.log(total).sum(axis=1) - picked.sum(axis=1)) / n
        if not want_grad:
            return loss
        # d(mean cross-entropy)/d logits = (softmax - onehot) / n
        logits /= total[:, None, :]
        np.put_along_axis(logits, labels, np.take_along_axis(logits, labels, axis=1) - 1.0, axis=1)
        logits /= n
        return loss, logits


def init_bound(activation: str, fan_in: int, fan_out: int) -> float:
    """Half-width of default_init's uniform weights, in torch.nn.init's own operation order.

    >>> round(init_bound("relu", 64, 10), 6), round(init_bound("tanh", 64, 10), 6)  # sqrt(6/64), sqrt(6/74)
    (0.306186, 0.284747)
    """
    if activation == "relu":  # kaiming_uniform_(w, a=0, mode="fan_in", nonlinearity="relu")
        std = math.sqrt(2.0) / math.sqrt(fan_in)
    else:  # xavier_uniform_(w, gain=1.0)
        std = 1.0 * math.sqrt(2.0 / float(fan_in + fan_out))
    return math.sqrt(3.0) * std


def _tanh(z):
    np.tanh(z, out=z)


def _relu(z):
    np.maximum(z, 0.0, out=z)


def _sigmoid(z):
    # 1 / (1 + exp(-z)) as torch.sigmoid; exp overflows to inf for z < -709, giving 0.
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)


# Each derivative from the activation's output h, overwriting h: backprop needs h no more.
def _tanh_derivative(h):
    np.multiply(h, h, out=h)
    return np.subtract(1.0, h, out=h)


def _relu_derivative(h):
    return h > 0.0


def _sigmoid_derivative(h):
    h *= 1.0 - h
    return h


_ACTIVATE = {"tanh": _tanh, "relu": _relu, "sigmoid": _sigmoid}
_DERIVATIVE = {"tanh": _tanh_derivative, "relu": _relu_derivative, "sigmoid": _sigmoid_derivative}


def mlp(dataset: str | None = "digits", data: str | None = None, x: str | Sequence[str] | None = None,
        y: str | None = None, task: str | None = None, hidden: int | Sequence[int] = (64,),
        activation: str = "tanh", val_fraction: float = 0.2, seed: int = 0, init_seed: int = 0,
        standardize: bool = True) -> MLP:
    """An MLP on a bundled data set or a CSV file (config group ``loss=mlp``).

    Args:
        dataset: a bundled scikit-learn set (gdexp.core.data.SKLEARN_DATASETS); null to use ``data``.
        data: path of a CSV file (then set dataset to null); see gdexp.core.data.load_dataset
            for it, ``x``, ``y``, ``task``, ``val_fraction``, ``seed`` and ``standardize``.
        hidden: widths of the hidden layers, e.g. [64] or [128, 64]; [] = a linear model.
        activation: "tanh", "relu" or "sigmoid", after every hidden layer.
        val_fraction: share of the data held out for validation metrics, in [0, 1).
        seed: seed of the validation split.
        init_seed: seed of the initial weights (default_init), the same for every run.
        standardize: standardize features (and regression targets) with the training statistics.

    Raises:
        ConfigError: one line naming the ``loss.<key>`` at fault.

    >>> net = mlp("iris", hidden=[8])
    >>> net.dim, net.n_data  # (4*8 + 8) + (8*3 + 3)
    (67, 120)
    """
    widths = (hidden,) if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool) else hidden
    if not isinstance(widths, Sequence) or isinstance(widths, str) or not all(
            isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1 for w in widths):
        raise ConfigError("loss.hidden", hidden, "must be a list of layer widths, each an integer >= 1 "
                          "([] = no hidden layer)")
    if activation not in ACTIVATIONS:
        raise ConfigError("loss.activation", activation, f"unknown activation; choose one of: {', '.join(ACTIVATIONS)}")
    if isinstance(init_seed, bool) or not isinstance(init_seed, numbers.Integral) or init_seed < 0:
        raise ConfigError("loss.init_seed", init_seed, "must be an integer >= 0")
    loaded = load_dataset(dataset=dataset, data=data, x=x, y=y, task=task, val_fraction=val_fraction,
                          seed=seed, standardize=standardize)
    sizes = (loaded.n_features, *widths, 1 if loaded.task == "regression" else loaded.n_classes)
    dim = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
    check_memory("loss.hidden", list(widths), point_bytes(dim), f"an MLP of {dim:,} parameters")
    return MLP(loaded, tuple(int(w) for w in widths), activation, int(init_seed))
