"""One registry for losses, optimizers and schedules: the config names its implementation.

Each option in conf/loss, conf/optimizer and conf/schedule says what it builds
with ``_target_``, as Hydra users write it (lightning-hydra-template's
``model: {_target_: ..., lr: ...}``), and its other keys are that target's
keyword arguments, checked against its signature (gdexp.core.params). A user's
own loss plugs in the same way (``loss._target_=mypkg.losses.saddle``): it is
imported from the folder gdexp was started in (gdexp.specs.targets), and a
function becomes a loss through JAX (gdexp.specs.user_loss).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdexp.core.errors import ConfigError
from gdexp.core.params import RESERVED, check_section, schema
from gdexp.specs.targets import is_gdexp_target, resolve

# Keyword arguments gdexp passes to a section's target itself, never set in the section, and why.
SUPPLIED = {"schedule": {"maxiter": "is the run's budget: set stopping.maxiter"},
            "loss": {"search_dir": "is the folder gdexp was started in (user code is imported from it)"}}
# Hydra's instantiate keys. gdexp builds each section from its one _target_ and plain keywords:
# a keyword's value is data, logged as a param and hashed, rebuilt by `gdexp rerun` and
# `gdexp report` without importing anything (a stored _target_ is imported only when trusted,
# --allow-module). A nested _target_ would import a second module outside that check, and hand
# the target an object no param or hash describes; so they are refused, naming the key.
INSTANTIATE_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


# What an optimizer's or a schedule's _target_ must be, checked before it is ever called (a loss is
# checked by gdexp.specs.user_loss when built): a factory annotated to return the group's
# type, taking the keyword gdexp always passes it. (group -> (module, type, keyword, an example))
KINDS = {"optimizer": ("gdexp.core.optimizers", "Optimizer", "lr", "gdexp.core.optimizers.gd"),
         "schedule": ("gdexp.core.schedules", "Schedule", "maxiter", "gdexp.core.schedules.cosine")}


def check_kind(prefix: str, path: str, target) -> None:
    """Refuse an optimizer or schedule ``_target_`` that is not of its group's kind, without calling it.

    The kind: a Python function (or a class) whose return annotation is the group's type
    (``-> Optimizer`` of gdexp.core.optimizers, ``-> Schedule`` of gdexp.core.schedules; a
    class must be a subclass of it) and whose signature takes the keyword gdexp passes
    (``lr`` for an optimizer, ``maxiter`` for a schedule). So ``os.system``, ``os.getcwd``,
    ``logging.basicConfig``, a builtin or a loss class are refused before they run.

    Raises:
        ConfigError: ``{prefix}._target_`` naming what it is and what is expected.

    >>> check_kind("optimizer", "os.getcwd", __import__("os").getcwd)
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: optimizer._target_='os.getcwd': is a built-in function, not an optimizer: name a factory annotated -> gdexp.core.optimizers.Optimizer taking lr (as gdexp.core.optimizers.gd)
    """
    import importlib
    import inspect
    import typing

    module, type_name, keyword, example = KINDS[prefix]
    kind = getattr(importlib.import_module(module), type_name)
    expected = (f"not {'an' if prefix[0] in 'aeiou' else 'a'} {prefix}: name a factory annotated "
                f"-> {module}.{type_name} taking {keyword} (as {example})")
    if inspect.isclass(target):
        if not issubclass(target, kind):
            raise ConfigError(f"{prefix}._target_", path, f"is the class {target.__qualname__}, {expected}")
        returns = kind
    elif inspect.isfunction(inspect.unwrap(target)):
        function = inspect.unwrap(target)
        try:
            returns = typing.get_type_hints(function).get("return")
        except Exception:  # noqa: BLE001 - an annotation that does not resolve: read as written
            returns = function.__annotations__.get("return")
        if isinstance(returns, str):
            returns = kind if returns.rsplit(".", 1)[-1] == type_name else returns
    else:
        what = "a built-in function" if inspect.isbuiltin(target) else f"{_a(type(target).__name__)}"
        raise ConfigError(f"{prefix}._target_", path, f"is {what}, {expected}")
    if not (inspect.isclass(returns) and issubclass(returns, kind)):
        shown = "has no return annotation" if returns is None else f"returns {getattr(returns, '__name__', returns)}"
        raise ConfigError(f"{prefix}._target_", path, f"{shown}, {expected}")
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    if keyword not in params:
        raise ConfigError(f"{prefix}._target_", path, f"takes no {keyword} keyword, {expected}")


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


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
    if prefix in KINDS:
        check_kind(prefix, path, target)
    default = getattr(target, "name", None)
    label = default if isinstance(default, str) else getattr(target, "__name__", prefix)
    name = node.get("name") or label
    if not isinstance(name, str):
        raise ConfigError(f"{prefix}.name", name, "must be a string")
    given = {k: v for k, v in node.items() if k not in (*RESERVED, *reserved)}
    check_plain_keywords(prefix, given)
    if prefix == "loss" and not is_gdexp_target(path):
        return _UserLoss(path, target, given, name, folder)  # checked by user_loss when built
    supplied = SUPPLIED.get(prefix, {})
    for key, reason in supplied.items():
        if key in given:
            raise ConfigError(f"{prefix}.{key}", given[key], reason)
    checked = check_section(prefix, target, given, label, extra=reserved, supplied=tuple(supplied))
    return Section(path, target, checked, name, folder)


def check_plain_keywords(prefix: str, given: dict) -> None:
    """Refuse Hydra's instantiate keys in a section's keywords (INSTANTIATE_KEYS, at any depth).

    Raises:
        ConfigError: one line naming the key: ``loss.scale._target_='mypkg.make_scale': a nested
            _target_ is not instantiated ...``.

    >>> check_plain_keywords("loss", {"scale": {"_target_": "mypkg.make_scale", "k": 3}})
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: loss.scale._target_='mypkg.make_scale': a nested _target_ is not instantiated: a keyword of loss takes plain values (numbers, strings, lists, dicts) only; build the object inside your loss from plain keywords (README, Your own loss)
    """
    def walk(where: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k in INSTANTIATE_KEYS:
                    what = "a nested _target_ is not instantiated" if k == "_target_" else \
                        f"{k} is Hydra's instantiate option, which gdexp does not apply"
                    raise ConfigError(f"{where}.{k}", v, f"{what}: a keyword of {prefix} takes plain values "
                                      "(numbers, strings, lists, dicts) only; build the object inside your "
                                      "loss from plain keywords (README, Your own loss)")
                walk(f"{where}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{where}[{i}]", v)

    for key, value in given.items():
        if key in INSTANTIATE_KEYS:
            walk(prefix, {key: value})
        walk(f"{prefix}.{key}", value)


@dataclass(frozen=True)
class _UserLoss(Section):
    """A user's loss section: built by gdexp.specs.user_loss.user_loss (a class or a JAX function)."""

    def build(self):
        from gdexp.specs.user_loss import user_loss

        return user_loss(self.path, self.search_dir, **self.params)
