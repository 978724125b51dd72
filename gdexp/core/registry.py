"""One registry for losses, optimizers and schedules: the config names its implementation.

Each option in conf/loss, conf/optimizer and conf/schedule says what it builds
with ``_target_``, as Hydra users write it (lightning-hydra-template's
``model: {_target_: ..., lr: ...}``), and its other keys are that target's
keyword arguments, checked against its signature (gdexp.core.params). A user's
own loss plugs in the same way (``loss._target_=mypkg.losses.saddle``): it is
imported from the folder gdexp was started in (gdexp.core.targets), and a
function becomes a loss through JAX (gdexp.core.losses.user).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdexp.core.errors import ConfigError
from gdexp.core.params import RESERVED, check_section, schema
from gdexp.core.targets import is_gdexp_target, resolve

# Keyword arguments gdexp passes to a section's target itself, never set in the section, and why.
SUPPLIED = {"schedule": {"maxiter": "is the run's budget: set stopping.maxiter"},
            "loss": {"search_dir": "is the folder gdexp was started in (user code is imported from it)"}}


@dataclass(frozen=True)
class Section:
    """A config section resolved: what it builds and how.

    Attributes:
        path: the ``_target_`` as written.
        target: the object it names.
        params: its keyword arguments, checked against the target's signature
            (a user's loss checks them itself when built).
        name: the display name (``loss.name``): given, or the target's ``name``
            attribute, or its ``__name__``.
        search_dir: the folder a user's module is imported from.
    """

    path: str
    target: Any
    params: dict
    name: str
    search_dir: str | None = None

    @property
    def is_user(self) -> bool:
        """Whether the target is a user's code (not a class or function of gdexp's core)."""
        return not is_gdexp_target(self.path)

    def config(self) -> dict:
        """The section as it is logged and hashed: _target_, name, then the checked keys."""
        return {"_target_": self.path, "name": self.name, **self.params}

    def build(self):
        """The object the section describes: the target called with its keyword arguments (and the
        start folder, for a target that imports user code: loss=torch)."""
        if "search_dir" in schema(self.target):
            return self.target(**self.params, search_dir=self.search_dir)
        return self.target(**self.params)


def section(prefix: str, node: dict, reserved: tuple[str, ...] = (), search_dir: str | Path | None = None) -> Section:
    """Resolve and check one config section (``loss``, ``optimizer``, ``schedule``).

    Args:
        reserved: keys of the section that are gdexp's, not the target's (left out of
            the check, the caller checks them; listed among the valid keys), e.g. the
            loss's ``batch_size``.
        search_dir: the folder gdexp was started in, where a user's module is found.

    Raises:
        ConfigError: a missing or bad ``_target_``, an unknown key (listing the
            valid ones), a key gdexp supplies itself (SUPPLIED), a value of the wrong
            type or range.
    """
    if not isinstance(node, dict) or not node.get("_target_") or node.get("_target_") == "???":
        raise ConfigError(f"{prefix}._target_", None if not isinstance(node, dict) else node.get("_target_"),
                          f"{prefix} needs a _target_ naming its implementation (package.module.name)")
    path = node["_target_"]
    folder = None if search_dir is None else str(search_dir)
    target = resolve(path, f"{prefix}._target_", folder)
    default = getattr(target, "name", None)
    label = default if isinstance(default, str) else getattr(target, "__name__", prefix)
    name = node.get("name") or label
    if not isinstance(name, str):
        raise ConfigError(f"{prefix}.name", name, "must be a string")
    given = {k: v for k, v in node.items() if k not in (*RESERVED, *reserved)}
    if prefix == "loss" and not is_gdexp_target(path):
        return _UserLoss(path, target, given, name, folder)  # checked by user_loss when built
    supplied = SUPPLIED.get(prefix, {})
    for key, reason in supplied.items():
        if key in given:
            raise ConfigError(f"{prefix}.{key}", given[key], reason)
    checked = check_section(prefix, target, given, label, extra=reserved, supplied=tuple(supplied))
    return Section(path, target, checked, name, folder)


@dataclass(frozen=True)
class _UserLoss(Section):
    """A user's loss section: built by gdexp.core.losses.user.user_loss (a class or a JAX function)."""

    def build(self):
        from gdexp.core.losses.user import user_loss

        return user_loss(self.path, self.search_dir, **self.params)
