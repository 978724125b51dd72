"""One registry for losses, optimizers and schedules: the config names its implementation.

Each option in conf/loss, conf/optimizer (and conf/schedule) says what it builds
with ``_target_``, as Hydra users write it (lightning-hydra-template's
``model: {_target_: ..., lr: ...}``), and its other keys are that target's
keyword arguments, checked against its signature (gdexp.core.params). A user's
own loss plugs in the same way (``loss._target_=mypkg.losses.saddle``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from gdexp.core.errors import ConfigError
from gdexp.core.params import RESERVED, check_section

GDEXP = "gdexp."


@dataclass(frozen=True)
class Section:
    """A config section resolved: its target, its checked keyword arguments and display name."""

    target: Any
    params: dict
    name: str

    def config(self, target_path: str) -> dict:
        """The section as it is logged and hashed: _target_, name, then the checked keys."""
        return {"_target_": target_path, "name": self.name, **self.params}


def resolve(path, key: str):
    """The object a ``_target_`` names (``package.module.attribute``).

    Raises:
        ConfigError: not a dotted path, no such module or attribute, not callable.
    """
    if not isinstance(path, str) or "." not in path.strip("."):
        raise ConfigError(key, path, "must name a callable as package.module.name")
    if not path.startswith(GDEXP):
        from gdexp.core.targets import resolve as resolve_user  # a user's module

        return resolve_user(path, key)
    module, _, attr = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise ConfigError(key, path, f"gdexp has no {attr!r} in {module}") from None
    if not callable(found):
        raise ConfigError(key, path, "is not callable")
    return found


def section(prefix: str, node: dict) -> Section:
    """Resolve and check one config section (``loss``, ``optimizer``, ``schedule``).

    Raises:
        ConfigError: a missing or bad ``_target_``, an unknown key (listing the
            valid ones), a value of the wrong type or range.
    """
    if not isinstance(node, dict) or "_target_" not in node:
        raise ConfigError(f"{prefix}._target_", None, f"{prefix} needs a _target_ naming its implementation")
    target = resolve(node["_target_"], f"{prefix}._target_")
    default = getattr(target, "name", None)
    label = default if isinstance(default, str) else getattr(target, "__name__", prefix)
    name = node.get("name") or label
    if not isinstance(name, str):
        raise ConfigError(f"{prefix}.name", name, "must be a string")
    params = check_section(prefix, target, {k: v for k, v in node.items() if k not in RESERVED}, label)
    return Section(target, params, name)
