"""From a resolved config to a validated run: the RunSpec that the descent and the store share.

Everything a config can get wrong in the core's sections (loss, optimizer,
stopping, init, seed) is found here, before any MLflow run exists.
"""
from __future__ import annotations

import hashlib
import json
import os
import weakref
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gdexp.specs import registry
from gdexp.core.errors import ConfigError
from gdexp.core.losses.base import Loss
from gdexp.specs.user_loss import UserLoss, check_gradient
from gdexp.core.params import NonNegativeInt, check_value, switches
from gdexp.core.resources import check_memory, check_run_memory, point_bytes
from gdexp.core.stopping import check_stopping

# The sections of a run's config the core reads; the rest (tracking, ...) belongs to the layers above.
CORE_KEYS = ("loss", "optimizer", "schedule", "stopping", "init", "seed")
CONSTANT = {"_target_": "gdexp.core.schedules.constant"}
# gdexp's own keys in the loss section (not the loss's): the mini-batch size.
LOSS_KEYS = ("batch_size", "check_grad")

# What recording a run holds in Python, per logged point and per run (RunSpec.record_bytes).
_RECORD_BYTES_PER_POINT = 300
_RECORD_BYTES_PER_RUN = 20_000


@dataclass(frozen=True)
class RunSpec:
    """One run, ready to descend and to record.

    Attributes:
        config: the run's config as logged and hashed: plain containers, each
            target section with its ``_target_``, display ``name`` and checked keys.
        loss: the built loss.
        optimizer: the optimizer's resolved section (target and checked hyper-parameters).
        schedule: the learning-rate schedule's resolved section (gdexp.core.schedules).
        x0: ``(dim,)`` the start point actually used.
        config_hash: 16 hex digits over everything that determines the result.
        run_name: e.g. ``rosenbrock-adam-lr=0.01``.
        varied: the dotted keys whose values differ between the runs of its sweep
            (gdexp.tracking.content.numeric_params logs their numbers as metrics).
    """

    config: dict
    loss: Loss
    optimizer: registry.Section
    schedule: registry.Section
    x0: np.ndarray
    config_hash: str
    run_name: str
    varied: tuple[str, ...] = ()

    @property
    def lr(self) -> float:
        return float(self.optimizer.params.get("lr", np.nan))

    @property
    def batch_key(self) -> str:
        """Runs with equal keys descend together as rows of one batch: same loss (and mini-batch
        size), same optimizer and schedule with the same batch-wide settings (bools, names,
        lists' lengths), same evaluation and sharpness steps, same pruning (stopping.prune*).
        Numbers may differ row by row, and so may the loss keys that set only a run's start (its
        ``start_keys``: loss=torch's ``init_seed``)."""
        opt, sched = self.optimizer, self.schedule
        tracking = self.config.get("tracking") or {}
        stopping = self.config["stopping"]
        start_keys = getattr(self.loss, "start_keys", ())
        loss = {k: v for k, v in self.config["loss"].items() if k not in start_keys}
        return canonical({"loss": loss, "optimizer": self.config["optimizer"]["_target_"],
                          "switches": {k: opt.params.get(k) for k in switches(opt.target)},
                          "schedule": self.config["schedule"]["_target_"],
                          "schedule_shape": {k: _shape(v) for k, v in sched.params.items()},
                          "every": [tracking.get("eval_every", 0), tracking.get("sharpness_every", 0)],
                          "prune": [stopping.get(k) for k in ("prune", "prune_eta", "prune_min_steps")]})

    @property
    def memory_bytes(self) -> int:
        """Bytes this run holds while its chunk descends and is recorded: its curves (curve_bytes),
        its parameters with their gradient and optimizer state (point_bytes), and its records
        (record_bytes)."""
        return self.curve_bytes + _point_bytes(self.loss, self.config["loss"].get("batch_size")) + self.record_bytes

    @property
    def record_bytes(self) -> int:
        """Bytes of this run's records while its chunk is written to the store (gdexp.tracking.bulk):
        every logged point as Python objects, twice (the record, then the row), and its params, tags
        and summary row. Measured: ~300 B a point, ~20 kB a run; without it a sweep of 100,000
        short runs made chunks of 16,000 runs whose records alone took ~3 GB."""
        tracking = self.config.get("tracking") or {}
        points = min(tracking.get("curve_points", 320), self.config["stopping"]["maxiter"] + 1)
        series = 2 + (0 if self.constant_rate else 1) + 3 * bool(tracking.get("eval_every")) \
            + bool(tracking.get("sharpness_every"))
        return _RECORD_BYTES_PER_POINT * points * series + _RECORD_BYTES_PER_RUN

    @property
    def curve_bytes(self) -> int:
        """Bytes of this run's curves at every step, an upper bound (a run that stops early holds
        less): float64 loss, gradient norm, the rate under a schedule, and the path of a loss of
        at most MAX_TRACKED_DIM parameters. In memory while it descends; on disk in curve.parquet."""
        from gdexp.core.descent import MAX_TRACKED_DIM

        dim = self.loss.dim
        columns = 2 + (0 if self.constant_rate else 1) + (dim if dim <= MAX_TRACKED_DIM else 0)
        return 8 * (self.config["stopping"]["maxiter"] + 1) * columns

    @property
    def constant_rate(self) -> bool:
        return bool(getattr(self.schedule.target, "__name__", "") == "constant")


def build_spec(config: dict, name_keys: tuple[str, ...] = (), search_dir: str | None = None,
               varied: tuple[str, ...] = (), choices: dict[str, str] | None = None) -> RunSpec:
    """Validate a run's config and build its loss and start point.

    Args:
        config: the resolved config, plain containers (sections loss, optimizer,
            schedule, stopping, init, seed; other sections are carried along unchecked).
        name_keys: dotted keys whose values go into the run name besides the
            learning rate (the keys a sweep varies), e.g. ``("loss.eigenvalues",)``.
        search_dir: the folder a user's loss module is imported from (the one gdexp
            was started in); None = the current folder.
        varied: the dotted keys whose values differ within the sweep (RunSpec.varied).
        choices: the config group options chosen (Hydra's runtime choices): a swept
            group is named in the run name by its option, not by the ``name`` it inherits.

    Returns:
        The RunSpec; its ``config`` holds the checked, canonical values. A null
        ``*seed`` key of the loss (the MLP's ``init_seed``) takes the run's ``seed``.

    Raises:
        ConfigError: naming the first key whose value cannot be run.
    """
    seed = check_value("seed", config.get("seed", 0), NonNegativeInt)
    node = _with_run_seed(config.get("loss"), seed)
    search_dir = search_dir or os.getcwd()
    loss_section = registry.section("loss", node, reserved=LOSS_KEYS, search_dir=search_dir)
    optimizer = registry.section("optimizer", config.get("optimizer"))
    schedule = registry.section("schedule", config.get("schedule") or CONSTANT)
    checked = dict(config)
    checked["loss"] = loss_section.config()
    if "batch_size" in node:
        checked["loss"]["batch_size"] = check_value("loss.batch_size", node["batch_size"], int | None)
    if "check_grad" in node:  # a user's numpy loss: its gradient checked before any run (user.check_gradient)
        checked["loss"]["check_grad"] = check_value("loss.check_grad", node["check_grad"], bool)
    checked["optimizer"] = optimizer.config()
    checked["schedule"] = schedule.config()
    checked["stopping"] = check_stopping(config.get("stopping") or {})
    checked["seed"] = seed
    loss = _build_loss(canonical({k: v for k, v in checked["loss"].items() if k not in LOSS_KEYS}),
                       _file_stamp(checked["loss"].get("data")), search_dir)
    _check_batch_size(checked["loss"].get("batch_size"), loss)
    if hasattr(loss, "device_bytes"):  # a torch network: one copy with its activations on a batch
        batch_size = checked["loss"].get("batch_size")
        check_memory("loss.batch_size", batch_size, loss.device_bytes(batch_size), "one copy of the network with "
                     "its activations on a batch", available=loss.device_memory())
    check_memory("loss.dim", loss.dim, point_bytes(loss.dim), f"a point of {loss.dim:,} parameters (with its "
                 "gradient, an optimizer's state and the best point)")
    x0 = _start(config.get("init"), loss)
    checked["init"] = None if config.get("init") is None else [float(v) for v in x0]
    _check_finite_start(loss, x0, checked)
    if checked["loss"].get("check_grad", True) and isinstance(loss, UserLoss):
        _check_gradient(loss, x0, seed)
    _check_schedule(schedule, optimizer, checked["stopping"]["maxiter"], x0)
    spec = RunSpec(checked, loss, optimizer, schedule, x0, config_hash(checked, loss),
                   run_name(checked, name_keys, choices), tuple(varied))
    check_run_memory(spec.memory_bytes, checked["stopping"]["maxiter"])
    return spec


def config_hash(config: dict, loss: Loss | None = None) -> str:
    """Stable hash of everything that determines a run's result.

    The tracking and summary sections are left out (where a run is stored and
    how its sweep is read do not change it); a data file's checksum is put in (its contents do), and so is the
    checksum of a user's loss module (its code does).
    """
    # summary.rtol reads the result, it does not change it: old runs keep their hash.
    content = {k: v for k, v in config.items() if k not in ("tracking", "summary")}
    if isinstance(content.get("loss"), dict) and "check_grad" in content["loss"]:  # a check, not the result
        content["loss"] = {k: v for k, v in content["loss"].items() if k != "check_grad"}
    if loss is not None and loss.data_sha256():
        content["data_sha256"] = loss.data_sha256()
    if getattr(loss, "source_sha256", None):  # a user's loss: the code it runs
        content["source_sha256"] = loss.source_sha256
    return hashlib.sha256(canonical(content).encode()).hexdigest()[:16]


def run_name(config: dict, name_keys: tuple[str, ...] = (), choices: dict[str, str] | None = None) -> str:
    """A readable name: ``rosenbrock-adam-lr=0.01``, plus the swept keys that differ.

    A swept group (``loss``, ``optimizer`` in `name_keys`) is named by the option chosen
    (`choices`), so that an option of a user's that inherits another's ``name``
    (defaults ``[momentum, _self_]``) still gives a run name of its own.

    >>> run_name({"loss": {"name": "quadratic", "eigenvalues": [1.0, 100.0]},
    ...           "optimizer": {"name": "gd", "lr": 0.01}}, ("loss.eigenvalues",))
    'quadratic-gd-lr=0.01-eigenvalues=[1,100]'
    >>> run_name({"loss": {"name": "booth"}, "optimizer": {"name": "momentum", "lr": 0.01}},
    ...          ("optimizer",), {"optimizer": "heavy"})
    'booth-heavy-lr=0.01'
    """
    def named(group: str) -> str:
        chosen = (choices or {}).get(group)
        return str(chosen) if chosen and group in name_keys else config[group]["name"]

    base = f"{named('loss')}-{named('optimizer')}-lr={config['optimizer']['lr']:g}"
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


def _point_bytes(loss: Loss, batch_size: int | None) -> int:
    """Bytes of one run's point: a torch network's on its device (parameters, optimizer state,
    activations of a batch), else point_bytes."""
    if hasattr(loss, "device_bytes"):
        return loss.device_bytes(batch_size)
    return point_bytes(loss.dim)


def _with_run_seed(node, seed: int):
    """The loss section with each null `*seed` key set to the run's seed."""
    if not isinstance(node, dict):
        return node
    return {k: (seed if v is None and k.endswith("seed") else v) for k, v in node.items()}


def _check_batch_size(batch_size, loss: Loss) -> None:
    if batch_size is None:
        return
    if batch_size < 1:
        raise ConfigError("loss.batch_size", batch_size, "must be null (full batch) or an integer >= 1")
    if loss.n_data is None:
        raise ConfigError("loss.batch_size", batch_size,
                          f"loss {loss.name} has no data to draw mini-batches from (null = full batch)")


def _check_schedule(schedule: registry.Section, optimizer: registry.Section, maxiter: int, x0: np.ndarray) -> None:
    """Build the schedule for this run alone and start it on the optimizer's state: a bad value,
    or a setting the optimizer cannot follow (momentum cycled without momentum), fails here."""
    built = schedule.target(**schedule.params, maxiter=maxiter)
    if not built.is_constant:
        built.init(optimizer.target(**optimizer.params).init(x0[None]))


def _shape(value):
    """What of a schedule value must be shared by a batch: a flag or name itself, a list's length."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return ["list", len(value)]
    return "number"


@lru_cache(maxsize=64)
def _build_loss(loss_json: str, data_stamp: tuple | None, search_dir: str) -> Loss:
    # Cached: a 1,000-run sweep of one loss reads its data file once. The data
    # file's stamp is part of the key, so a file changed on disk is read again.
    node = json.loads(loss_json)
    try:
        loss = registry.section("loss", node, reserved=LOSS_KEYS, search_dir=search_dir).build()
    except MemoryError as exc:  # a size no check above foresaw (a user's loss): name its largest one
        sizes = {k: v for k, v in node.items() if isinstance(v, int) and not isinstance(v, bool)}
        key = max(sizes, key=sizes.get) if sizes else "_target_"
        raise ConfigError(f"loss.{key}", node.get(key), f"building the loss ran out of memory ({exc})") from None
    if not isinstance(loss, Loss):
        raise ConfigError("loss._target_", node["_target_"], "must build a gdexp Loss")
    return loss


def _file_stamp(path) -> tuple | None:
    try:
        st = os.stat(path) if isinstance(path, str) and path else None
    except OSError:
        return None  # the loss itself reports a missing file, naming the key
    return None if st is None else (os.path.abspath(path), st.st_mtime_ns, st.st_size)


# Start points found finite, per loss: a sweep's jobs share a few (loss, start) pairs, each evaluated once.
_FINITE_STARTS: "weakref.WeakKeyDictionary[Loss, set[bytes]]" = weakref.WeakKeyDictionary()


def _check_finite_start(loss: Loss, x0: np.ndarray, config: dict) -> None:
    """A loss or gradient that is not finite at the start point is an input error (data near
    1e300, a start far out), not a divergence at step 0: it names init, the data file, or the loss."""
    try:
        seen = _FINITE_STARTS.setdefault(loss, set())
    except TypeError:  # a user's loss that cannot be weakly referenced or hashed: checked every time
        seen = set()
    if x0.tobytes() in seen:
        return
    with np.errstate(all="ignore"):
        value, grad = loss.value_and_grad(x0[None])
    bad = [(what, v) for what, v in (("loss", value), ("gradient", grad)) if not np.isfinite(v).all()]
    if not bad:
        seen.add(x0.tobytes())
        return
    what, v = bad[0]
    shown = np.asarray(v).ravel()[~np.isfinite(np.asarray(v).ravel())][0]
    data = config["loss"].get("data")
    key, value = (("init", config["init"]) if config.get("init") is not None
                  else ("loss.data", data) if data else ("loss", config["loss"]["name"]))
    raise ConfigError(key, value, f"the {what} is {shown} at the start point: an input error, not a divergence "
                      "(values too large for float64? rescale the data, or choose another init=[...])")


def _check_gradient(loss, x0: np.ndarray, seed: int) -> None:
    """check_gradient once per loss object and start (a sweep plans many runs of one loss)."""
    try:
        seen = _GRADIENT_CHECKED.setdefault(loss, set())
    except TypeError:
        seen = set()
    if x0.tobytes() not in seen:
        check_gradient(loss, x0, seed)
        seen.add(x0.tobytes())


_GRADIENT_CHECKED: "weakref.WeakKeyDictionary[Loss, set[bytes]]" = weakref.WeakKeyDictionary()


def _start(init, loss: Loss) -> np.ndarray:
    if init is None:
        return np.asarray(loss.default_init(), dtype=float)
    try:
        x0 = np.asarray(init, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError("init", init, "must be a list of numbers") from None
    if x0.shape != (loss.dim,):
        shown = list(init) if isinstance(init, (list, tuple)) else init  # a scalar, a nested list: as given
        raise ConfigError("init", shown, f"needs {loss.dim} values for loss {loss.name} (dim={loss.dim})")
    if not np.isfinite(x0).all():
        raise ConfigError("init", list(init), "must be finite")
    return x0
