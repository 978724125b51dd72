"""From a resolved config to a validated run, and from runs to batched descent.

Everything a config can get wrong is found here, before any MLflow run exists.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gdexp.core.descent import descend
from gdexp.core.result import Result
from gdexp.core.stopping import StoppingRules
from gdexp.core.errors import ConfigError
from gdexp.core.losses import Loss, make_loss
from gdexp.core.optimizers import make_optimizer

# Optimizer options that change the code path rather than a number: runs that
# differ in them cannot share a batch.
_SWITCHES = ("amsgrad", "centered")


@dataclass(frozen=True)
class RunSpec:
    """One run, ready to descend and to record."""

    config: dict          # the resolved config, plain containers
    loss: Loss
    x0: np.ndarray        # (dim,) the start actually used
    config_hash: str
    run_name: str

    @property
    def optimizer(self) -> dict:
        return self.config["optimizer"]

    @property
    def lr(self) -> float:
        return float(self.config["optimizer"]["lr"])

    @property
    def batch_key(self) -> str:
        """Runs with equal keys descend together as rows of one batch."""
        opt = self.config["optimizer"]
        switches = {k: opt[k] for k in _SWITCHES if k in opt}
        return _canonical({"loss": self.config["loss"], "optimizer": opt["name"], **switches})


def plan(config: dict) -> RunSpec:
    """Validate a resolved config and build its loss and start point.

    Raises:
        ConfigError: naming the first key whose value cannot be run.
    """
    _check_budget(config["budget"])
    _check_tracking(config["tracking"])
    loss = _build_loss(_canonical(config["loss"]), _file_stamp(config["loss"].get("data")))
    opt = dict(config["optimizer"])
    make_optimizer(opt.pop("name"), **opt)  # validates every hyper-parameter
    x0 = _start(config.get("init"), loss)
    return RunSpec(config, loss, x0, config_hash(config, loss), run_name(config))


def execute(specs: list[RunSpec]) -> list[Result]:
    """Descend every run, batching runs that share a loss and an optimizer."""
    out = execute_isolated(specs)
    for outcome in out:
        if isinstance(outcome, Exception):
            raise outcome
    return out


def execute_isolated(specs: list[RunSpec]) -> list[Result | Exception]:
    """Like execute, but a batch that raises yields its error for each of its runs,
    and the other batches still run."""
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(spec.batch_key, []).append(i)
    out: list[Result | Exception | None] = [None] * len(specs)
    for rows in groups.values():
        try:
            results = _descend_batch([specs[i] for i in rows])
        except Exception as exc:
            results = [exc] * len(rows)
        for i, outcome in zip(rows, results):
            out[i] = outcome
    return out


def _descend_batch(batch: list[RunSpec]) -> list[Result]:
    opts = [dict(s.optimizer) for s in batch]
    name = opts[0].pop("name")
    for o in opts[1:]:
        o.pop("name")
    hyper = {k: (opts[0][k] if k in _SWITCHES else np.array([o[k] for o in opts], dtype=float))
             for k in opts[0]}
    optimizer = make_optimizer(name, **hyper)
    x0 = np.stack([s.x0 for s in batch])
    rules = StoppingRules.of([_stopping(s.config["budget"]) for s in batch])
    return descend(batch[0].loss, optimizer, x0, rules)


def _stopping(b: dict) -> dict:
    return {"maxiter": b["max_iters"], "gtol": b["tol"], "patience": b["patience"],
            "min_delta": b["min_delta"], "divergence_factor": b["divergence_factor"]}


def config_hash(config: dict, loss: Loss | None = None) -> str:
    """Stable hash of everything that determines a run's result.

    The tracking section is left out (where a run is stored does not change
    it); a data file's checksum is put in (its contents do).
    """
    content = {k: v for k, v in config.items() if k != "tracking"}
    if loss is not None and loss.data_sha256():
        content["data_sha256"] = loss.data_sha256()
    return hashlib.sha256(_canonical(content).encode()).hexdigest()[:16]


def run_name(config: dict) -> str:
    """A readable name such as 'rosenbrock-adam-lr=0.01'."""
    return f"{config['loss']['name']}-{config['optimizer']['name']}-lr={config['optimizer']['lr']:g}"


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@lru_cache(maxsize=64)
def _build_loss(loss_json: str, data_stamp: tuple | None) -> Loss:
    # Cached: a 1,000-run sweep of one loss reads its data file once. The data
    # file's stamp is part of the key, so a file changed on disk is read again.
    params = json.loads(loss_json)
    return make_loss(params.pop("name"), **params)


def _file_stamp(path) -> tuple | None:
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None  # the loss itself reports a missing file, naming the key
    return None if st is None else (os.path.abspath(path), st.st_mtime_ns, st.st_size)


def _start(init, loss: Loss) -> np.ndarray:
    if init is None:
        return np.asarray(loss.default_init(), dtype=float)
    x0 = np.asarray(init, dtype=float)
    if x0.shape != (loss.dim,):
        raise ConfigError("init", list(init), f"needs {loss.dim} values for loss {loss.name} (dim={loss.dim})")
    if not np.isfinite(x0).all():
        raise ConfigError("init", list(init), "must be finite")
    return x0


def _check_budget(b: dict) -> None:
    _require(b, "max_iters", lambda v: v >= 1, "must be >= 1", prefix="budget")
    _require(b, "tol", lambda v: math.isfinite(v) and v >= 0, "must be finite and >= 0 (0 = off)", prefix="budget")
    _require(b, "patience", lambda v: v >= 0, "must be >= 0 (0 = off)", prefix="budget")
    _require(b, "min_delta", lambda v: math.isfinite(v) and v >= 0, "must be finite and >= 0", prefix="budget")
    _require(b, "divergence_factor", lambda v: v > 1, "must be > 1 (inf: only nan or inf count)", prefix="budget")


def _check_tracking(t: dict) -> None:
    _require(t, "curve_points", lambda v: v >= 2, "must be >= 2", prefix="tracking")
    _require(t, "experiment", lambda v: bool(str(v).strip()), "must not be empty", prefix="tracking")


def _require(section: dict, key: str, ok, reason: str, prefix: str) -> None:
    if not ok(section[key]):
        raise ConfigError(f"{prefix}.{key}", section[key], reason)
