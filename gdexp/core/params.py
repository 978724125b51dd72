"""Config keys checked against the signature of the code they configure.

A loss, an optimizer or a schedule is configured by the keyword arguments of its
factory (or its dataclass fields): their names are the config keys, their
annotations the types and admissible ranges, their defaults the defaults. So a
new hyper-parameter is one annotated argument, and nothing else has to learn it.

    >>> def gd(lr: Positive = 1e-3, nesterov: bool = False): ...
    >>> check_section("optimizer", gd, {"lr": 1})
    {'lr': 1.0}
    >>> check_section("optimizer", gd, {"lr": -1.0})
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: optimizer.lr=-1.0: must be finite and > 0
    >>> check_section("optimizer", gd, {"lrr": 0.1})
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: optimizer.lrr=0.1: not a key of optimizer gd; valid keys: lr, nesterov
"""
from __future__ import annotations

import inspect
import math
import numbers
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Union

import numpy as np

from gdexp.core.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Admissible values of a number (every bound optional; NaN never passes)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    finite: bool = True

    def ok(self, v: np.ndarray) -> np.ndarray:
        """Elementwise test of a scalar or (B,) array."""
        v = np.asarray(v, dtype=np.float64)
        good = ~np.isnan(v)
        if self.finite:
            good &= np.isfinite(v)
        for bound, test in ((self.gt, np.greater), (self.ge, np.greater_equal),
                            (self.lt, np.less), (self.le, np.less_equal)):
            if bound is not None:
                good &= test(v, bound)
        return good

    def describe(self) -> str:
        """The rule as the end of an error line: 'must be finite and > 0', 'must be in [0, 1)'."""
        lo = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else None
        hi = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else None
        if lo and hi:
            return f"must be in {lo}, {hi}"
        bound = next((f"{op} {v:g}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le),
                                                   ("<", self.lt)) if v is not None), None)
        return "must be " + " and ".join(p for p in ("finite" if self.finite else None, bound) if p)


# The number types configs use; each carries its range for check_value.
Positive = Annotated[float, Range(gt=0)]
NonNegative = Annotated[float, Range(ge=0)]
Finite = Annotated[float, Range()]
UnitOpen = Annotated[float, Range(ge=0, lt=1)]        # [0, 1)
UnitClosed = Annotated[float, Range(ge=0, le=1)]      # [0, 1]
Factor = Annotated[float, Range(gt=1, finite=False)]  # > 1, inf allowed
PositiveInt = Annotated[int, Range(ge=1, finite=False)]
NonNegativeInt = Annotated[int, Range(ge=0, finite=False)]

# Keys every target section may hold besides the signature's: what to build, and a display name.
RESERVED = ("_target_", "name")


@lru_cache(maxsize=256)
def schema(target) -> dict[str, inspect.Parameter]:
    """The configurable keyword arguments of a factory, function or class, by name.

    Positional-only arguments and *args/**kwargs are not config keys (a
    target that takes **kwargs accepts any further key: see accepts_any).
    """
    params = inspect.signature(target).parameters
    return {name: p for name, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def accepts_any(target) -> bool:
    """Whether the target takes **kwargs (so unknown keys go to it unchecked)."""
    return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(target).parameters.values())


@lru_cache(maxsize=256)
def hints(target) -> dict[str, Any]:
    """Resolved annotations (with Annotated extras) of a target's parameters; {} where unresolvable."""
    fn = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # a user's target with annotations we cannot resolve: checked by the target itself
        return {}


def switches(target) -> tuple[str, ...]:
    """Keys annotated bool: they change the code path, so they are batch-wide (never per row)."""
    return tuple(name for name in schema(target) if _base(hints(target).get(name)) is bool)


def check_section(prefix: str, target, values: dict, label: str | None = None, *,
                  extra: tuple[str, ...] = (), supplied: tuple[str, ...] = ()) -> dict:
    """Check a config section's keys and values against `target`'s signature.

    Args:
        prefix: the section's dotted key (``loss``, ``optimizer``), used in messages.
        target: the factory, function or class the section configures.
        values: the section without the reserved keys.
        label: how messages name the target (default: its __name__).
        extra: keys the section may hold that are gdexp's, not the target's (checked by
            the caller, left out of `values`): listed among the valid keys.
        supplied: keyword arguments of the target that gdexp passes itself (a
            schedule's ``maxiter``): not config keys, so neither listed nor required.

    Returns:
        The values coerced to their annotated types (ints to floats where a float
        is annotated, numeric strings to numbers), so equal configs log and hash equal.

    Raises:
        ConfigError: an unknown key (listing the valid ones), a missing required
            key, or a value of the wrong type or outside its range.
    """
    params = {k: p for k, p in schema(target).items() if k not in supplied}
    types = hints(target)
    name = label or getattr(target, "__name__", str(target))
    for key, value in values.items():
        if key not in params and not accepts_any(target):
            valid = ", ".join([*params, *extra]) or "none"
            raise ConfigError(f"{prefix}.{key}", value, f"not a key of {prefix} {name}; valid keys: {valid}")
    for key, p in params.items():
        if key not in values and p.default is inspect.Parameter.empty:
            raise ConfigError(f"{prefix}.{key}", None, f"required by {prefix} {name}; give {prefix}.{key}=...")
    return {key: check_value(f"{prefix}.{key}", value, types.get(key)) for key, value in values.items()}


def check_value(key: str, value, annotation):
    """One value against its annotation; returns it coerced, or raises ConfigError naming `key`.

    Understood: float, int, bool, str, None-able unions, lists/tuples of those,
    and Annotated[..., Range(...)]. Anything else passes unchecked (the target
    checks it).
    """
    if annotation is None or annotation is Any:
        return value
    base, extras = _unwrap(annotation)
    options = typing.get_args(base) if typing.get_origin(base) in (Union, _UnionType) else (base,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(key, value, f"must be {_describe(base)}, not null")
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return _coerce(key, value, option, extras)
        except ConfigError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    raise ConfigError(key, value, f"must be {_describe(base)}")


def check_array(key: str, value, annotation) -> np.ndarray:
    """A scalar or (B,) array of numbers against a numeric annotation's range (one value per row).

    >>> check_array("optimizer.lr", [0.1, -1.0], Positive)
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: optimizer.lr=-1.0: must be finite and > 0 (row 1)
    """
    arr = as_rows(key, value)
    _, extras = _unwrap(annotation)
    for rule in (e for e in extras if isinstance(e, Range)):
        refuse_rows(key, value, ~rule.ok(arr), rule.describe())
    return arr


def as_rows(key: str, value) -> np.ndarray:
    """A number or a (B,) array of numbers (one per row) as float64; ConfigError naming `key` otherwise."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim > 1 or arr.size == 0:
        raise ConfigError(key, value, "must be a number or a (B,) array of numbers")
    return arr


def refuse_rows(key: str, value, bad, reason: str) -> None:
    """Raise ConfigError for the first row where `bad` (a scalar or (B,) mask) holds, showing
    `value` there as it was given.

    >>> refuse_rows("schedule.gamma", [0.5, 2.0], np.array([False, True]), "must be < 1")
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: schedule.gamma=2.0: must be < 1 (row 1)
    """
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0]) if np.ndim(bad) else 0
        shown = np.asarray(value)[first].item() if np.ndim(value) else value
        raise ConfigError(key, shown, reason + (f" (row {first})" if np.ndim(bad) else ""))


_UnionType = type(int | None)
_INT64 = 2**63
_PLURAL = {"a number": "numbers", "an integer": "integers", "a string": "strings",
           "true or false": "booleans"}


def _unwrap(annotation):
    extras: tuple = ()
    if typing.get_origin(annotation) is Annotated:
        annotation, *more = typing.get_args(annotation)
        extras = tuple(more)
    return annotation, extras


def _base(annotation):
    return _unwrap(annotation)[0] if annotation is not None else None


def _coerce(key: str, value, kind, extras):
    origin = typing.get_origin(kind)
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, value, "must be true or false")
    if kind in (int, float):
        number = _number(key, value, integer=kind is int)
        for rule in (e for e in extras if isinstance(e, Range)):
            if not rule.ok(number):
                raise ConfigError(key, value, rule.describe())
        return number
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "must be a string")
        return value
    if origin in (list, tuple) or kind in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
            raise ConfigError(key, value, f"must be {_describe(kind)}")
        args = typing.get_args(kind)
        item = args[0] if args else None
        return [check_value(f"{key}[{i}]", v, item) if item is not None else v for i, v in enumerate(value)]
    return value


def _number(key: str, value, integer: bool):
    if isinstance(value, str):
        try:  # "1e12" for an integer as for a number: Hydra hands exponent forms of typed keys as text
            value = int(value) if integer and value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            raise ConfigError(key, value, "must be " + ("an integer" if integer else "a number")) from None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(key, value, "must be " + ("an integer" if integer else "a number"))
    if integer:
        if not isinstance(value, numbers.Integral) and not (math.isfinite(value) and float(value).is_integer()):
            raise ConfigError(key, value, "must be an integer")
        if abs(int(value)) >= _INT64:  # counts go into int64 arrays
            raise ConfigError(key, value, f"must be below 2**63 in magnitude")
        return int(value)
    try:
        return float(value)
    except OverflowError:  # an integer beyond float64's range (10**400)
        raise ConfigError(key, value, "is too large for a float64 (at most 1.8e308)") from None


def _describe(kind) -> str:
    base, _ = _unwrap(kind)
    if typing.get_origin(base) in (Union, _UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(base) if a is not type(None)) + " (or null)"
    if base is bool:
        return "true or false"
    if base in (int, float):
        return "an integer" if base is int else "a number"
    if base is str:
        return "a string"
    if typing.get_origin(base) in (list, tuple) or base in (list, tuple):
        args = typing.get_args(base)
        item = _describe(args[0]) if args and args[0] is not Ellipsis else ""
        return f"a list of {_PLURAL.get(item, 'values')}" if item else "a list"
    return getattr(base, "__name__", str(base))
