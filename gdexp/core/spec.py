"""From a resolved config to a validated run: the RunSpec that the descent and the store share.

Everything a config can get wrong in the core's sections (loss, optimizer,
stopping, init, seed) is found here, before any MLflow run exists.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gdexp.core import registry
from gdexp.core.errors import ConfigError
from gdexp.core.losses.base import Loss
from gdexp.core.params import NonNegativeInt, check_value, switches
from gdexp.core.stopping import check_stopping

# The sections of a run's config the core reads; the rest (tracking, ...) belongs to the layers above.
CORE_KEYS = ("loss", "optimizer", "stopping", "init", "seed")


@dataclass(frozen=True)
class RunSpec:
    """One run, ready to descend and to record.

    Attributes:
        config: the run's config as logged and hashed: plain containers, each
            target section with its ``_target_``, display ``name`` and checked keys.
        loss: the built loss.
        optimizer: the optimizer's resolved section (target and checked hyper-parameters).
        x0: ``(dim,)`` the start point actually used.
        config_hash: 16 hex digits over everything that determines the result.
        run_name: e.g. ``rosenbrock-adam-lr=0.01``.
    """

    config: dict
    loss: Loss
    optimizer: registry.Section
    x0: np.ndarray
    config_hash: str
    run_name: str

    @property
    def lr(self) -> float:
        return float(self.optimizer.params.get("lr", np.nan))

    @property
    def batch_key(self) -> str:
        """Runs with equal keys descend together as rows of one batch: same loss, same
        optimizer, same values of its batch-wide switches (bool hyper-parameters)."""
        opt = self.optimizer
        fixed = {k: opt.params.get(k) for k in switches(opt.target)}
        return canonical({"loss": self.config["loss"], "optimizer": self.config["optimizer"]["_target_"],
                          **fixed})


def plan(config: dict, name_keys: tuple[str, ...] = ()) -> RunSpec:
    """Validate a run's config and build its loss and start point.

    Args:
        config: the resolved config, plain containers (sections loss, optimizer,
            stopping, init, seed; other sections are carried along unchecked).
        name_keys: dotted keys whose values go into the run name besides the
            learning rate (the keys a sweep varies), e.g. ``("loss.eigenvalues",)``.

    Returns:
        The RunSpec; its ``config`` holds the checked, canonical values.

    Raises:
        ConfigError: naming the first key whose value cannot be run.
    """
    loss_section = registry.section("loss", config.get("loss"))
    optimizer = registry.section("optimizer", config.get("optimizer"))
    checked = dict(config)
    checked["loss"] = loss_section.config(config["loss"]["_target_"])
    checked["optimizer"] = optimizer.config(config["optimizer"]["_target_"])
    checked["stopping"] = check_stopping(config.get("stopping") or {})
    checked["seed"] = check_value("seed", config.get("seed", 0), NonNegativeInt)
    loss = _build_loss(canonical(checked["loss"]), _file_stamp(checked["loss"].get("data")))
    x0 = _start(config.get("init"), loss)
    checked["init"] = config.get("init")
    return RunSpec(checked, loss, optimizer, x0, config_hash(checked, loss), run_name(checked, name_keys))


def config_hash(config: dict, loss: Loss | None = None) -> str:
    """Stable hash of everything that determines a run's result.

    The tracking section is left out (where a run is stored does not change
    it); a data file's checksum is put in (its contents do).
    """
    content = {k: v for k, v in config.items() if k != "tracking"}
    if loss is not None and loss.data_sha256():
        content["data_sha256"] = loss.data_sha256()
    return hashlib.sha256(canonical(content).encode()).hexdigest()[:16]


def run_name(config: dict, name_keys: tuple[str, ...] = ()) -> str:
    """A readable name: ``rosenbrock-adam-lr=0.01``, plus the swept keys that differ.

    >>> run_name({"loss": {"name": "quadratic", "eigenvalues": [1.0, 100.0]},
    ...           "optimizer": {"name": "gd", "lr": 0.01}}, ("loss.eigenvalues",))
    'quadratic-gd-lr=0.01-eigenvalues=[1,100]'
    """
    base = f"{config['loss']['name']}-{config['optimizer']['name']}-lr={config['optimizer']['lr']:g}"
    extra = [f"{key.rsplit('.', 1)[-1]}={_short(lookup(config, key))}" for key in name_keys
             if key not in ("optimizer.lr", "loss", "optimizer", "optimizer.name", "loss.name")]
    return "-".join([base, *extra])


def lookup(config: dict, dotted: str):
    """The value at a dotted key of a nested config (None where absent)."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def canonical(obj) -> str:
    """One JSON text per value: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


@lru_cache(maxsize=64)
def _build_loss(loss_json: str, data_stamp: tuple | None) -> Loss:
    # Cached: a 1,000-run sweep of one loss reads its data file once. The data
    # file's stamp is part of the key, so a file changed on disk is read again.
    node = json.loads(loss_json)
    resolved = registry.section("loss", node)
    loss = resolved.target(**resolved.params)
    if not isinstance(loss, Loss):
        raise ConfigError("loss._target_", node["_target_"], "must build a gdexp Loss")
    return loss


def _file_stamp(path) -> tuple | None:
    try:
        st = os.stat(path) if isinstance(path, str) and path else None
    except OSError:
        return None  # the loss itself reports a missing file, naming the key
    return None if st is None else (os.path.abspath(path), st.st_mtime_ns, st.st_size)


def _start(init, loss: Loss) -> np.ndarray:
    if init is None:
        return np.asarray(loss.default_init(), dtype=float)
    try:
        x0 = np.asarray(init, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError("init", init, "must be a list of numbers") from None
    if x0.shape != (loss.dim,):
        raise ConfigError("init", list(init), f"needs {loss.dim} values for loss {loss.name} (dim={loss.dim})")
    if not np.isfinite(x0).all():
        raise ConfigError("init", list(init), "must be finite")
    return x0
