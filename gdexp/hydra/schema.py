"""The typed schema behind conf/: Hydra rejects a misspelt key or a wrong type when it composes.

The top-level sections and the fixed groups (stopping, tracking) are structured
configs made from the dataclasses of the code they configure
(gdexp.core.stopping.StoppingConfig, gdexp.tracking.config.TrackingConfig): one
source of truth. The target groups (loss, optimizer) name their implementation
with ``_target_``; their keys are checked against its signature when a run is
planned (gdexp.specs.registry), which also catches keys added with ``+``.
"""
from __future__ import annotations

import typing
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from gdexp.core.errors import ConfigError
from gdexp.core.stopping import StoppingConfig
from gdexp.results.ties import SummaryConfig
from gdexp.tracking.config import TrackingConfig


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
        default = field(default=f.default) if f.default is not NO_DEFAULT else field(default=MISSING)
        spec.append((f.name, kind, default))
    return make_dataclass(name, spec)


StoppingConf = structured(StoppingConfig, "StoppingConf")
TrackingConf = structured(TrackingConfig, "TrackingConf")
SummaryConf = structured(SummaryConfig, "SummaryConf")


@dataclass
class Config:
    """A run's whole config; its fields are the only top-level keys."""

    loss: Any = MISSING
    optimizer: Any = MISSING
    schedule: Any = MISSING
    stopping: Any = field(default_factory=StoppingConf)
    tracking: Any = field(default_factory=TrackingConf)
    summary: Any = field(default_factory=SummaryConf)  # how a sweep's answers are read (gdexp.results.ties)
    init: Optional[List[float]] = None
    seed: int = 0


TOP_LEVEL = tuple(f.name for f in fields(Config))


def check_top_level(config: dict) -> None:
    """Refuse a top-level key no code reads (added with ``+``), listing the valid ones."""
    for key, value in config.items():
        if key not in TOP_LEVEL:
            valid = ", ".join(TOP_LEVEL)
            raise ConfigError(key, value, f"not a config key; valid top-level keys: {valid}")


def register_configs() -> None:
    """Put the schema and gdexp's plugins into Hydra's ConfigStore; conf/ files build on them."""
    from hydra.core.plugins import Plugins

    from gdexp.hydra.plugin_configs import store_plugins

    # Hydra's plugin scan stores hydra-ray-launcher's and hydra-submitit-launcher's own
    # launcher configs; scanned first, so that gdexp's presets of those names replace them.
    Plugins.instance()
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="schema/stopping", name="default", node=StoppingConf)
    cs.store(group="schema/tracking", name="local", node=TrackingConf)
    cs.store(group="schema/tracking", name="server", node=TrackingConf)
    store_plugins(cs)
