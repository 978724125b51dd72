"""A user's PyTorch network as a loss: B stacked copies, trained as one vectorized program.

``gdexp -m loss=torch loss.model=mypkg.net.model loss.data=mypkg.net.data optimizer=adam ...``
builds ``torch_module(model="mypkg.net.model", data="mypkg.net.data", ...)``:

- ``model()`` returns a fresh ``torch.nn.Module``; a run's start is what
  ``torch.manual_seed(init_seed); model()`` gives (``init_seed`` null: the
  run's ``seed``), its parameters flattened as
  ``torch.nn.utils.parameters_to_vector(m.parameters())``.
- ``data()`` returns ``(X, y)`` or ``(X, y, X_val, y_val)``, tensors or
  arrays; or ``dataset=NAME`` takes a bundled scikit-learn set as ``loss=mlp``
  does (gdexp.core.data.load_dataset: split, standardized).
- ``criterion``: ``cross_entropy`` or ``mse`` (torch.nn.functional's, mean
  reduction) or a dotted path to ``criterion(pred, target) -> scalar``.

A batch's x is a ``(B, dim)`` tensor on ``device`` in ``dtype``, one flat
parameter vector per run: the descent (gdexp.core.descent), the optimizers
and the stopping rules run on it as on numpy arrays (gdexp.core.arrays). Each
gradient is ``torch.func.vmap(torch.func.grad_and_value(f))`` over the rows,
``f(w) = criterion(functional_call(module, unflatten(w), X), y)``: the same
arithmetic as B separate modules, in one program. Sharpness uses exact
Hessian-vector products (``torch.func.vjp`` of ``grad``).

The model, data and criterion are user code: found, imported, trusted
(``--allow-module``) and refused in one line as a ``loss._target_`` is
(gdexp.specs.targets); ``source_sha256`` is the checksum of the file that
defines ``model``. torch is imported only when this loss is built
(``pip install 'gdexp[torch]'``).
"""
# Kept whole (over ~300 lines): building, probing and running one network, and its one-line refusals.
from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np

from gdexp.core.errors import ConfigError
from gdexp.core.losses.base import Loss
from gdexp.core.resources import check_memory
from gdexp.specs.targets import describe_exception, resolve, source_sha256

__all__ = ["CRITERIA", "DEVICES", "DTYPES", "TARGET", "TorchModuleLoss", "code_paths", "torch_module"]

#: Built-in criteria: torch.nn.functional's, mean reduction.
CRITERIA = ("cross_entropy", "mse")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda", "auto")
#: conf/loss/torch.yaml's _target_.
TARGET = "gdexp.specs.torch_loss.torch_module"
#: The keys of a loss=torch section that name user code (dotted paths), as loss._target_ does.
CODE_KEYS = ("model", "data", "criterion")

# Stacked copies of the network per call of the vmapped gradient: bounds the activations held at once
# (B copies x a batch's activations); a larger batch of runs is split, rows never mixing.
_CALL_BYTES = 256 * 2**20


def _import_torch():
    try:
        import torch
        import torch.func  # noqa: F401
    except ImportError:
        raise ConfigError("loss._target_", TARGET,
                          "loss=torch trains a PyTorch network, and torch is not installed: "
                          "pip install 'gdexp[torch]'") from None
    return torch


def code_paths(section: dict) -> dict[str, str]:
    """The dotted paths of user code a loss=torch section names: ``{"loss.model": path, ...}``
    (a built-in criterion and a ``dataset`` are not code). For the trust check of stored configs.

    >>> code_paths({"model": "mypkg.net.model", "data": None, "criterion": "mse"})
    {'loss.model': 'mypkg.net.model'}
    """
    return {f"loss.{key}": section[key] for key in CODE_KEYS
            if isinstance(section.get(key), str) and section[key] not in CRITERIA}


def torch_module(model: str, data: str | None = None, dataset: str | None = None,
                 criterion: str = "cross_entropy", dtype: str = "float32", device: str = "cpu",
                 init_seed: int | None = None, val_fraction: float = 0.2, seed: int = 0,
                 standardize: bool = True, search_dir: str | None = None) -> "TorchModuleLoss":
    """A user's torch network on their data or a bundled set (config group ``loss=torch``).

    Args:
        model: dotted path of a callable returning a fresh ``torch.nn.Module``.
        data: dotted path of a callable returning ``(X, y)`` or ``(X, y, X_val, y_val)``
            (tensors or arrays); give it or ``dataset``.
        dataset: a bundled scikit-learn set (gdexp.core.data.SKLEARN_DATASETS), split and
            standardized as for ``loss=mlp`` with ``val_fraction``, ``seed``, ``standardize``.
        criterion: ``cross_entropy``, ``mse``, or a dotted path to ``criterion(pred, target) -> scalar``.
        dtype: ``float32`` or ``float64``: the parameters', data's and optimizer state's.
        device: ``cpu``, ``cuda`` or ``auto`` (cuda where torch sees one).
        init_seed: ``torch.manual_seed`` before ``model()``; null = the run's seed (gdexp.specs.run_spec).
        search_dir: the folder gdexp was started in, where the user's modules are imported from
            (supplied by gdexp, not a config key).

    Raises:
        ConfigError: one line naming the ``loss.<key>`` at fault: torch missing, an unknown dtype,
            device or criterion, cuda asked where there is none, a path that does not import,
            ``model()`` not a Module, data whose shapes do not fit it, a criterion that does not
            return a scalar, a network of more parameters than memory holds.
    """
    torch = _import_torch()
    if dtype not in DTYPES:
        raise ConfigError("loss.dtype", dtype, f"choose one of: {', '.join(DTYPES)}")
    if device not in DEVICES:
        raise ConfigError("loss.device", device, f"choose one of: {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("loss.device", device, "torch sees no CUDA device here (torch.cuda.is_available() "
                                                 "is False); use loss.device=cpu or auto")
    if init_seed is None or isinstance(init_seed, bool) or not isinstance(init_seed, numbers.Integral) \
            or init_seed < 0:
        raise ConfigError("loss.init_seed", init_seed, "must be an integer >= 0 (null = the run's seed)")
    if (data is None) == (dataset is None):
        raise ConfigError("loss.data", data, "give loss.data (a function returning (X, y) or (X, y, X_val, "
                                             "y_val)) or loss.dataset (a bundled set), not both, not neither")
    return TorchModuleLoss(dict(model=model, data=data, dataset=dataset, criterion=criterion, dtype=dtype,
                                device=device, init_seed=int(init_seed), val_fraction=val_fraction,
                                seed=seed, standardize=standardize), search_dir)


class TorchModuleLoss(Loss):
    """Mean criterion of a user's network on its data; x holds one flat parameter vector per run.

    Methods take x as a ``(B, dim)`` tensor (the descent's, on ``device``) and
    return tensors; given a numpy array they return numpy float64 arrays (the
    config checks, sharpness's Lanczos, evaluations at stop steps).

    Attributes:
        config: the keyword arguments it was built from (and pickles as), search_dir aside.
        module: the network ``model()`` returned, in dtype on device (its parameters are
            replaced by each row's in every call; its buffers are read).
        source_sha256: SHA-256 of the file defining ``model``.
        n_data, n_val: training and validation points.
        classes: whether the criterion is cross_entropy (accuracies are reported).
    """

    name = "torch"
    #: Keys that set only the start (default_init), not the function: runs differing in them share a
    #: batch (RunSpec.batch_key), each row with its own start, so `seed=0,1,2` is one vectorized program.
    start_keys = ("init_seed",)

    def __init__(self, config: dict, search_dir: str | None):
        torch = _import_torch()
        self.config, self.search_dir = dict(config), None if search_dir is None else str(Path(search_dir).resolve())
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[config["dtype"]]
        self.device = torch.device("cuda" if config["device"] == "cuda" or (
            config["device"] == "auto" and torch.cuda.is_available()) else "cpu")
        build = resolve(config["model"], "loss.model", self.search_dir)
        self.source_sha256 = source_sha256(build)  # the model's file, as a loss._target_'s
        self.module = self._build_module(torch, build)
        self._names = [n for n, _ in self.module.named_parameters()]
        self._shapes = [p.shape for _, p in self.module.named_parameters()]
        self._sizes = [p.numel() for _, p in self.module.named_parameters()]
        self._buffers = dict(self.module.named_buffers())
        self.dim = int(sum(self._sizes))
        check_memory("loss.model", config["model"], 6 * self.dim * self.module_itemsize,
                     f"a network of {self.dim:,} parameters")
        self._init = torch.nn.utils.parameters_to_vector(self.module.parameters()).detach()
        self.criterion_name = config["criterion"]
        self._criterion = self._resolve_criterion(torch, config["criterion"])
        self.classes = config["criterion"] == "cross_entropy"
        self._data = self._load_data(torch)
        self.n_data, self.n_val = len(self._data["y_train"]), len(self._data["y_val"])
        self._compile(torch)
        self._probe(torch)

    # -- building -------------------------------------------------------------------------

    @property
    def module_itemsize(self) -> int:
        return 8 if self.config["dtype"] == "float64" else 4

    def _build_module(self, torch, build):
        torch.manual_seed(self.config["init_seed"])
        try:
            module = build()
        except ConfigError:
            raise
        except Exception as error:
            raise ConfigError("loss.model", self.config["model"],
                              f"model() raised {describe_exception(error, _file_of(build))}") from None
        if not isinstance(module, torch.nn.Module):
            raise ConfigError("loss.model", self.config["model"], f"model() returned {_a(module)}, "
                                                                  "not a torch.nn.Module")
        if not any(True for _ in module.parameters()):
            raise ConfigError("loss.model", self.config["model"], "model() has no parameters to train")
        return module.to(dtype=self.dtype, device=self.device)

    def _resolve_criterion(self, torch, name: str):
        functional = torch.nn.functional
        if name == "cross_entropy":
            return functional.cross_entropy
        if name == "mse":
            return functional.mse_loss
        if not isinstance(name, str) or "." not in name:
            raise ConfigError("loss.criterion", name, f"choose one of: {', '.join(CRITERIA)}, or a dotted "
                                                      "path to criterion(pred, target) -> scalar")
        return resolve(name, "loss.criterion", self.search_dir)

    def _load_data(self, torch) -> dict:
        """The training and validation parts as tensors on the device: features in dtype, targets
        as class indices (int64) for cross_entropy, else in dtype."""
        c = self.config
        if c["dataset"] is not None:
            from gdexp.core.data import load_dataset

            loaded = load_dataset(dataset=c["dataset"], val_fraction=c["val_fraction"], seed=c["seed"],
                                  standardize=c["standardize"])
            parts, self._data_sha256 = (loaded.x_train, loaded.y_train, loaded.x_val, loaded.y_val), loaded.sha256
            self._source = f"sklearn.datasets.load_{c['dataset']}"
        else:
            fn = resolve(c["data"], "loss.data", self.search_dir)
            try:
                parts = fn()
            except ConfigError:
                raise
            except Exception as error:
                raise ConfigError("loss.data", c["data"],
                                  f"data() raised {describe_exception(error, _file_of(fn))}") from None
            if not isinstance(parts, (tuple, list)) or len(parts) not in (2, 4):
                raise ConfigError("loss.data", c["data"], f"data() returned {_a(parts)}; needs (X, y) or "
                                                          "(X, y, X_val, y_val)")
            self._data_sha256, self._source = None, c["data"]
        names = ("x_train", "y_train", "x_val", "y_val")
        out = {}
        for name, part in zip(names, parts):
            try:
                tensor = torch.as_tensor(np.array(part) if not isinstance(part, torch.Tensor) else part)
            except Exception as error:
                raise ConfigError("loss.data", c["data"] or c["dataset"],
                                  f"its {name} is {_a(part)}, not an array: {describe_exception(error)}") from None
            target = name.startswith("y")
            # Class indices for cross_entropy (and integer targets of a criterion of the user's own).
            integer = self.classes or (target and self.criterion_name != "mse" and not tensor.is_floating_point())
            kind = torch.int64 if target and integer else self.dtype
            if target and self.classes and tensor.is_floating_point() and not bool((tensor == tensor.round()).all()):
                raise ConfigError("loss.data", c["data"] or c["dataset"],
                                  f"its {name} holds non-integer values; cross_entropy needs class indices")
            out[name] = tensor.to(dtype=kind, device=self.device)
        if "x_val" not in out:
            out["x_val"], out["y_val"] = out["x_train"][:0], out["y_train"][:0]
        for part in ("train", "val"):
            if len(out[f"x_{part}"]) != len(out[f"y_{part}"]):
                raise ConfigError("loss.data", c["data"] or c["dataset"],
                                  f"X_{part} has {len(out[f'x_{part}'])} rows but y_{part} {len(out[f'y_{part}'])}")
        if len(out["y_train"]) == 0:
            raise ConfigError("loss.data", c["data"] or c["dataset"], "the training part has no rows")
        return out

    def _compile(self, torch) -> None:
        from torch.func import functional_call, grad, grad_and_value, vjp, vmap

        offsets = np.cumsum([0, *self._sizes])
        names, shapes, module, buffers = self._names, self._shapes, self.module, self._buffers

        def predict(w, X):
            params = {n: w[offsets[i]:offsets[i + 1]].view(shapes[i]) for i, n in enumerate(names)}
            return functional_call(module, (params, buffers), (X,))

        def loss(w, X, y):
            pred = predict(w, X)
            if self.criterion_name == "mse" and pred.ndim == y.ndim + 1 and pred.shape[-1] == 1:
                pred = pred[..., 0]  # a (n, 1) output against (n,) targets, as MSELoss would not broadcast
            return self._criterion(pred, y)

        self._predict_one, self._loss_one = predict, loss
        self._value_and_grad = {shared: vmap(grad_and_value(loss), in_dims=(0, None, None) if shared else (0, 0, 0))
                                for shared in (True, False)}
        self._values = vmap(loss, in_dims=(0, None, None))
        self._predict = vmap(predict, in_dims=(0, None))
        g = grad(loss)
        # Reverse over reverse (the vjp of grad: H is symmetric, so v^T H = H v). Forward over reverse
        # (jvp of grad, one pass cheaper) fails in torch 2.13 on a tanh-mse net: "ZeroTensors are immutable".
        self._hvp = vmap(lambda w, v, X, y: vjp(lambda u: g(u, X, y), w)[1](v)[0], in_dims=(0, 0, None, None))

    def _probe(self, torch) -> None:
        """One forward pass on each part of the data and one gradient at the start, so each way the
        parts do not fit is one line here, before any run: data shapes (training and validation),
        class indices beyond the model's outputs, the criterion's output, vmap's limits. The
        warnings torch gives on the way (a broadcast in mse) are left out: the refusal says it."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for part in ("train", "val") if self.n_val else ("train",):
                self._probe_part(torch, part)
            X, y = self._data["x_train"][:2], self._data["y_train"][:2]
            try:
                self._value_and_grad[True](self._init[None], X, y)
            except Exception as error:
                raise ConfigError("loss.model", self.config["model"],
                                  f"cannot be stacked with torch.func.vmap: {describe_exception(error)} "
                                  "(dropout, batch-norm updates and .item() are not supported)") from None

    def _probe_part(self, torch, part: str) -> None:
        """The model and the criterion on two points of one part (`train`, `val`), and, for
        cross_entropy, every target of the part against the model's outputs."""
        X, y = self._data[f"x_{part}"][:2], self._data[f"y_{part}"][:2]
        key, shown = ("loss.data", self.config["data"] or self.config["dataset"])
        try:
            with torch.no_grad():
                pred = self._predict_one(self._init, X)
        except Exception as error:
            raise ConfigError(key, shown, f"model(X_{part}[:2]) with X_{part} of shape "
                                          f"{tuple(self._data[f'x_{part}'].shape)} raised {describe_exception(error)}") from None
        if self.classes and pred.ndim >= 1:
            targets, classes = self._data[f"y_{part}"], pred.shape[-1]
            low, high = int(targets.min()), int(targets.max())
            if low < 0 or high >= classes:
                raise ConfigError(key, shown, f"y_{part} holds class {low if low < 0 else high}, but the model has "
                                              f"{classes} outputs (classes 0..{classes - 1})")
        try:
            with torch.no_grad():
                out = self._loss_one(self._init, X, y)
        except Exception as error:
            raise ConfigError("loss.criterion", self.criterion_name,
                              f"criterion(pred {tuple(pred.shape)}, target {tuple(y.shape)}) raised "
                              f"{describe_exception(error)}") from None
        if self.criterion_name == "mse" and tuple(pred.shape[:1] + y.shape[1:]) != tuple(
                pred.shape if pred.ndim != y.ndim + 1 or pred.shape[-1] != 1 else pred.shape[:-1]):
            raise ConfigError(key, shown, f"model(X_{part}[:2]) has shape {tuple(pred.shape)} but y_{part}[:2] "
                                          f"{tuple(y.shape)}: mse needs one output per target")
        if not isinstance(out, torch.Tensor) or out.ndim != 0 or not out.is_floating_point():
            raise ConfigError("loss.criterion", self.criterion_name,
                              f"criterion(pred, target) returned {_a(out)}"
                              f"{'' if not isinstance(out, torch.Tensor) else f' of shape {tuple(out.shape)}'}; "
                              "needs a float scalar (a mean over the batch)")

    # -- the Loss interface ---------------------------------------------------------------

    def as_params(self, x0: np.ndarray):
        """(B, dim) start points as the tensor the descent computes with, in dtype on device."""
        import torch

        return torch.as_tensor(np.asarray(x0, dtype=np.float64), device=self.device).to(self.dtype)

    def default_init(self) -> np.ndarray:
        """``parameters_to_vector(model().parameters())`` after ``torch.manual_seed(init_seed)``, float64."""
        return self._init.detach().cpu().double().numpy().copy()

    def value_and_grad(self, x, rows=None):
        """Mean criterion over the training points (or each row's mini-batch ``rows`` (B, m)) and its
        gradient: ``((B,), (B, dim))``, tensors for a tensor x, float64 arrays for a numpy x."""
        w, host = self._tensor(x)
        X, y = self._data["x_train"], self._data["y_train"]
        # Rows that all draw the same mini-batch (one seed for the whole sweep) share one batch: a
        # convolution then sees one input against stacked weights, not B inputs in B groups.
        shared = rows is None or _all_equal(rows)
        if rows is not None:
            import torch

            index = torch.tensor(np.asarray(rows)[0] if shared else np.asarray(rows), device=self.device)
            if shared:
                X, y = X[index], y[index]
        if shared:
            parts = [self._value_and_grad[True](w[c], X, y) for c in self._calls(len(w), len(y))]
        else:  # each call gathers its own rows' batches (a (B, m, ...) copy of them all could be large)
            parts = [self._value_and_grad[False](w[c], X[index[c]], y[index[c]])
                     for c in self._calls(len(w), index.shape[1])]
        g, f = _joined(parts, 0), _joined(parts, 1)
        return (_host(f), _host(g)) if host else (f.detach(), g.detach())

    def value(self, x):
        w, host = self._tensor(x)
        f = self._part_values(w, "train")
        return _host(f) if host else f

    def eval_metrics(self, x) -> dict[str, np.ndarray]:
        """Full-data metrics per run, as host arrays: ``train_loss``, ``val_loss`` with a validation
        part; for cross_entropy ``train_accuracy``, ``val_accuracy`` (largest output is the class)."""
        import torch

        w, _ = self._tensor(x)
        out = {}
        with torch.no_grad():
            for part in ("train", "val") if self.n_val else ("train",):
                out[f"{part}_loss"] = _host(self._part_values(w, part))
                if self.classes:
                    X, y = self._data[f"x_{part}"], self._data[f"y_{part}"]
                    hits = [(self._predict(w[c], X).argmax(dim=-1) == y).to(torch.float64).mean(dim=-1)
                            for c in self._calls(len(w), len(y))]
                    out[f"{part}_accuracy"] = _host(torch.cat(hits)) if hits else np.empty(0)
        return out

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(B, dim) exact Hessian-vector products on the full training data, float64 host arrays:
        ``torch.func.vjp`` of ``grad`` (see _compile for why not ``jvp``)."""
        w, _ = self._tensor(x)
        u, _ = self._tensor(v)
        X, y = self._data["x_train"], self._data["y_train"]
        import torch

        out = [self._hvp(w[c], u[c], X, y) for c in self._calls(len(w), len(y))]
        return _host(torch.cat(out)) if out else np.zeros((0, self.dim))

    def data_sha256(self) -> str | None:
        return self._data_sha256

    def data_source(self) -> str:
        return self._source

    @property
    def param_names(self) -> tuple[str, ...]:
        """``name[i]``: the module's parameter name and the index in its flattened tensor."""
        return tuple(f"{n}[{i}]" for n, size in zip(self._names, self._sizes) for i in range(size))

    def device_bytes(self, points: int | None = None) -> int:
        """Bytes one stacked copy holds on its device while it descends: its parameters, gradient,
        optimizer state (two moments) and the step kept for the stop check (6 copies), plus its
        activations on `points` data points (None: the whole training part), measured on the
        probe's forward pass and tripled for backward."""
        points = self.n_data if points is None else min(points, self.n_data)
        return 6 * self.dim * self.module_itemsize + self._activation_bytes() * points // self._probe_points

    def device_memory(self) -> int | None:
        """Free bytes on the device (cuda), or None on the cpu (the host's memory is checked)."""
        if self.device.type != "cuda":
            return None
        import torch

        return int(torch.cuda.mem_get_info(self.device)[0])

    def __repr__(self) -> str:
        return f"TorchModuleLoss({self.config['model']!r}, dim={self.dim}, {self.config['dtype']}, {self.device})"

    def __reduce__(self):
        # Workers rebuild from the paths (a vmapped function does not pickle), refusing changed code.
        return _rebuild, (self.config, self.search_dir, self.source_sha256)

    # -- helpers ---------------------------------------------------------------------------

    def _tensor(self, x):
        """(x as a (B, dim) tensor in dtype on device, whether x came as a numpy array)."""
        import torch

        if isinstance(x, torch.Tensor):
            return x, False
        return self.as_params(np.asarray(x, dtype=np.float64).reshape(-1, self.dim)), True

    def _part_values(self, w, part: str):
        import torch

        X, y = self._data[f"x_{part}"], self._data[f"y_{part}"]
        with torch.no_grad():
            return _joined([(self._values(w[c], X, y),) for c in self._calls(len(w), len(y))], 0)

    def _calls(self, rows: int, points: int):
        """Slices of the batch of runs per vmapped call, each within _CALL_BYTES of activations."""
        per_row = max(1, self._activation_bytes() * points // max(1, min(points, self._probe_points)))
        size = max(1, _CALL_BYTES // per_row)
        return [slice(s, s + size) for s in range(0, rows, size)]

    _probe_points = 2
    _activations = None

    def _activation_bytes(self) -> int:
        """Bytes of activations one copy keeps for backward on `_probe_points` points (3 x the
        outputs of every submodule: output, saved input, gradient)."""
        if self._activations is None:
            import torch

            sizes = []
            hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size()
                                                                          if isinstance(o, torch.Tensor) else 0))
                     for m in self.module.modules()]
            try:
                with torch.no_grad():
                    self.module(self._data["x_train"][:self._probe_points])
            finally:
                for h in hooks:
                    h.remove()
            self._activations = 3 * sum(sizes) + 1
        return self._activations


def _rebuild(config, search_dir, sha256):
    loss = TorchModuleLoss(config, search_dir)
    if loss.source_sha256 != sha256:
        raise ConfigError("loss.model", config["model"], "its source file changed after the sweep started; "
                                                         "start it again")
    return loss


def _joined(parts, i: int):
    import torch

    return torch.cat([p[i] for p in parts]) if len(parts) != 1 else parts[0][i]


def _all_equal(rows) -> bool:
    """Whether every row of a (B, m) array of mini-batch indices is the same batch."""
    rows = np.asarray(rows)
    return bool((rows == rows[:1]).all())


def _host(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _file_of(obj) -> str | None:
    import inspect

    try:
        return inspect.getsourcefile(obj)
    except TypeError:
        return None


def _a(obj) -> str:
    kind = type(obj).__name__
    return f"an {kind}" if kind[:1].lower() in "aeiou" else f"a {kind}"


torch_module.name = "torch"  # the display name (loss.name, run names), as conf/loss/torch.yaml's option
