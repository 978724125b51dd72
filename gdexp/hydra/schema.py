"""The typed schema behind conf/: Hydra rejects a misspelt key or a wrong type when it composes.

The top-level sections and the fixed groups (stopping, tracking) are structured
configs made from the dataclasses of the code they configure
(gdexp.core.stopping.StoppingConfig, gdexp.tracking.config.TrackingConfig): one
source of truth. The target groups (loss, optimizer) name their implementation
with ``_target_``; their keys are checked against its signature when a run is
planned (gdexp.specs.registry), which also catches keys added with ``+``.

A job's composed config is checked section by section by ``job_spec``. Nothing here imports
Hydra or OmegaConf until ``register_configs``: the schema is read, and a job planned, before
Hydra starts (gdexp.hydra.precheck).
"""
from __future__ import annotations

import typing
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, List, Optional

from gdexp.core.errors import ConfigError
from gdexp.core.stopping import StoppingConfig
from gdexp.results.ties import SummaryConfig, check_summary
from gdexp.specs.run_spec import RunSpec, build_spec
from gdexp.tracking.config import TrackingConfig, check_tracking


def structured(cls, name: str):
    """An OmegaConf-friendly copy of a dataclass: Annotated ranges stripped, `X | None` as Optional."""
    hints = typing.get_type_hints(cls)
    spec = []
    for f in fields(cls):
        kind = hints[f.name]
        args = typing.get_args(kind)
        if type(None) in args:
            kind = Optional[next(a for a in args if a is not type(None))]
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
        if kind is int or kind == Optional[int]:
            # Hydra would refuse 1e6 for an int ("could not be converted to Integer") where the
            # loss's own keys take it: gdexp.core.params checks every count, 1e6 -> 1000000, 1.5 refused
            kind = Any
        # A field without a default is OmegaConf's MISSING (???): a value the config must give.
        spec.append((f.name, kind) if f.default is NO_DEFAULT else (f.name, kind, field(default=f.default)))
    return make_dataclass(name, spec)


StoppingConf = structured(StoppingConfig, "StoppingConf")
TrackingConf = structured(TrackingConfig, "TrackingConf")
SummaryConf = structured(SummaryConfig, "SummaryConf")


@dataclass
class Config:
    """A run's whole config; its fields are the only top-level keys. The target groups have
    no default: OmegaConf's MISSING, which the defaults list's choice of option fills."""

    loss: Any
    optimizer: Any
    schedule: Any
    stopping: Any = field(default_factory=StoppingConf)
    tracking: Any = field(default_factory=TrackingConf)
    summary: Any = field(default_factory=SummaryConf)  # how a sweep's answers are read (gdexp.results.ties)
    init: Optional[List[float]] = None
    seed: int = 0


TOP_LEVEL = tuple(f.name for f in fields(Config))
# The structured configs conf/ files build on (``defaults: [/schema/stopping/default@_here_]``), by
# their name in Hydra's ConfigStore.
SCHEMAS = {"config_schema": Config, "schema/stopping/default": StoppingConf,
           "schema/tracking/local": TrackingConf, "schema/tracking/server": TrackingConf}


def check_top_level(config: dict) -> None:
    """Refuse a top-level key no code reads (added with ``+``), listing the valid ones."""
    for key, value in config.items():
        if key not in TOP_LEVEL:
            valid = ", ".join(TOP_LEVEL)
            raise ConfigError(key, value, f"not a config key; valid top-level keys: {valid}")


def job_spec(config: dict, name_keys: tuple[str, ...] = (), varied: tuple[str, ...] = (),
             choices: dict[str, str] | None = None) -> RunSpec:
    """Check every section of a job's config and build its run's spec (ConfigError naming the key).

    name_keys, varied, choices: as gdexp.specs.run_spec.build_spec takes them; a job of a sweep run
    elsewhere (joblib, Ray, SLURM) gets the first two from its sweep (gdexp.tracking.env.SWEPT)."""
    check_top_level(config)
    config = {**config, "tracking": check_tracking(config.get("tracking") or {}),
              "summary": check_summary(config.get("summary") or {})}
    return build_spec(config, name_keys, varied=varied, choices=choices)


def job_refusal(error: ConfigError, num: int, overrides: list[str]) -> ConfigError:
    """A job's refusal as its sweep says it: the job's number and overrides after the reason.

    >>> str(job_refusal(ConfigError("optimizer.lr", -1, "must be finite and > 0"), 1, ["optimizer.lr=-1"]))
    'optimizer.lr=-1: must be finite and > 0 (job #1: optimizer.lr=-1)'
    """
    return ConfigError(error.key, error.value, f"{error.reason} (job #{num}: {' '.join(overrides)})")


_stored_in = None  # the ConfigStore register_configs stored into


def register_configs() -> None:
    """Put the schema and gdexp's plugins into Hydra's ConfigStore; conf/ files build on them.

    Once per ConfigStore (per process, unless Hydra's singletons are reset): the nodes never
    change, and Hydra deep-copies a stored node on each load, so a composition cannot alter them.
    """
    global _stored_in
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from gdexp.hydra.plugin_configs import store_plugins

    if ConfigStore.instance() is _stored_in:
        return
    # Hydra's plugin scan stores hydra-ray-launcher's and hydra-submitit-launcher's own
    # launcher configs; scanned first, so that gdexp's presets of those names replace them.
    Plugins.instance()
    cs = ConfigStore.instance()
    for path, node in SCHEMAS.items():
        group, _, name = path.rpartition("/")
        cs.store(group=group or None, name=name, node=node)
    store_plugins(cs)
    _stored_in = cs
