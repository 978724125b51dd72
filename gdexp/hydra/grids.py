"""Grid functions in sweep overrides: logspace (= geomspace), linspace and a float range that behaves.

Hydra's basic sweeper has no log-spaced grid, and its float `range()` yields
0.30000000000000004 and includes the stop value. These expand to plain comma
lists of clean decimals before Hydra parses them, also inside Hydra's
`sort(...)` and `shuffle(...)`. A grid that cannot be made is one ConfigError
naming the key and the grid.

Note for numpy users: gdexp's `logspace(a, b, n)` takes the end values
themselves, like numpy's `geomspace` (accepted as a synonym), not numpy
`logspace`'s exponents: `logspace(1e-4,1,5)` is 1e-4, 1e-3, 1e-2, 1e-1, 1.
"""
from __future__ import annotations

import math
import re

import numpy as np

from gdexp.core.errors import ConfigError

_GRID = r"(?P<fn>logspace|geomspace|linspace|range)\((?P<args>[^()]*)\)"
_CALL = re.compile(rf"^(?P<key>[^=]+)=\s*{_GRID}\s*$")
# Hydra's sort(...) and shuffle(...) around a grid, with Hydra's own keyword arguments after it.
_WRAPPED = re.compile(rf"^(?P<key>[^=]+)=\s*(?P<outer>sort|shuffle)\(\s*{_GRID}(?P<rest>(\s*,\s*\w+\s*=\s*[^,()]+)*)\s*\)\s*$")
_SIGNIFICANT = 12  # digits kept: far below a double's noise, far above any grid's meaning
MAX_POINTS = 1_000_000  # more values than any sweep can run; refused before numpy allocates them


def clean(value: float) -> str:
    """The shortest decimal that names value to 12 significant digits.

    >>> clean(0.1 + 0.2), clean(10 ** -3.0), clean(1e-05), clean(1.0)
    ('0.3', '0.001', '1e-05', '1')
    """
    return f"{float(value):.{_SIGNIFICANT}g}"


def logspace(start: float, stop: float, num: int) -> list[float]:
    """num values from start to stop (both included), evenly spaced in log10 (numpy's geomspace).

    >>> logspace(1e-4, 1, 5)
    [0.0001, 0.001, 0.01, 0.1, 1.0]
    """
    if start <= 0 or stop <= 0:
        raise ValueError(f"needs positive end values, got {clean(start)} and {clean(stop)}; gdexp's "
                         "logspace takes the values themselves, as numpy's geomspace does "
                         "(logspace(1e-4,1,5) is 1e-4 ... 1), not numpy logspace's exponents")
    return [float(clean(v)) for v in np.logspace(math.log10(start), math.log10(stop), num)]


def linspace(start: float, stop: float, num: int) -> list[float]:
    """num values from start to stop, both included, evenly spaced.

    >>> linspace(0, 1, 6)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    return [float(clean(v)) for v in np.linspace(start, stop, num)]


def frange(start: float, stop: float, step: float = 1.0) -> list[float]:
    """Python's range() for floats: the stop is excluded, values are clean.

    >>> frange(0.1, 0.4, 0.1), frange(1.3, 0, -0.5)
    ([0.1, 0.2, 0.3], [1.3, 0.8, 0.3])
    """
    if step == 0:
        raise ValueError("the step must not be 0")
    # The count, with a little slack for values like (0.4 - 0.1) / 0.1 = 2.9999999999999996.
    n = max(0, math.ceil((stop - start) / step - 1e-9))
    if n > MAX_POINTS:
        raise ValueError(f"has {n} values; at most {MAX_POINTS:,}")
    return [float(clean(start + i * step)) for i in range(n)]


_GRIDS = {"logspace": logspace, "geomspace": logspace, "linspace": linspace, "range": frange}
_ARITY = {"logspace": (3,), "geomspace": (3,), "linspace": (3,), "range": (2, 3)}


def expand(override: str) -> str:
    """`key=logspace(a,b,n)` (or geomspace, linspace, a float range, any of them inside
    sort() or shuffle()) -> `key=v1,v2,...`; other overrides unchanged.

    Integer ranges are left to Hydra, which handles them exactly.

    >>> expand("optimizer.lr=logspace(1e-3,1e-1,3)")
    'optimizer.lr=0.001,0.01,0.1'
    >>> expand("optimizer.lr=sort(range(1.3,0,-0.5))")
    'optimizer.lr=sort(1.3,0.8,0.3)'
    >>> expand("stopping.maxiter=range(1,4)")
    'stopping.maxiter=range(1,4)'
    >>> expand("optimizer.lr=logspace(1e-4,1,2.7)")
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: optimizer.lr='logspace(1e-4,1,2.7)': the number of points must be a whole number >= 1, got 2.7
    """
    text = override.strip()
    wrapped = _WRAPPED.match(text)
    match = wrapped or _CALL.match(text)
    if not match:
        return override
    key, fn, raw = match["key"], match["fn"], [a.strip() for a in match["args"].split(",")]
    grid = f"{fn}({match['args']})"
    if fn == "range" and all(re.fullmatch(r"[+-]?\d+", a) for a in raw):
        _check_int_range(key.lstrip("+~"), grid, [int(a) for a in raw])
        return override
    values = [clean(v) for v in _values(key.lstrip("+~"), grid, fn, raw)]
    if wrapped:
        return f"{key}={wrapped['outer']}({','.join(values)}{wrapped['rest'] or ''})"
    return f"{key}=" + ",".join(values)


def _check_int_range(key: str, grid: str, args: list[int]) -> None:
    """An integer range, left to Hydra, refused here if it has no values (Hydra would run none,
    or raise ValueError for a step of 0).

    >>> _check_int_range("stopping.maxiter", "range(5,1)", [5, 1])
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: stopping.maxiter='range(5,1)': is empty: the step must lead from start towards stop (range excludes its stop, as Python's does)
    """
    _check_arity(key, grid, "range", args)
    if len(args) == 3 and args[2] == 0:
        raise ConfigError(key, grid, "the step must not be 0")
    if not range(*args):
        raise ConfigError(key, grid, _EMPTY)


_EMPTY = "is empty: the step must lead from start towards stop (range excludes its stop, as Python's does)"


def _check_arity(key: str, grid: str, fn: str, args: list) -> None:
    if len(args) not in _ARITY[fn]:
        usage = {"range": "range(start,stop,step)"}.get(fn, f"{fn}(start,stop,num)")
        raise ConfigError(key, grid, f"takes {' or '.join(map(str, _ARITY[fn]))} numbers: {usage}")


def _values(key: str, grid: str, fn: str, raw: list[str]) -> list[float]:
    _check_arity(key, grid, fn, raw)
    try:
        args = [float(a) for a in raw]
    except ValueError:
        raise ConfigError(key, grid, f"arguments must be numbers, got {', '.join(raw)}") from None
    if not all(math.isfinite(a) for a in args):
        raise ConfigError(key, grid, "arguments must be finite")
    if fn != "range":
        num = args[2]
        if not num.is_integer() or num < 1:
            raise ConfigError(key, grid, f"the number of points must be a whole number >= 1, got {raw[2]}")
        if num > MAX_POINTS:
            raise ConfigError(key, grid, f"asks for {int(num):,} points; at most {MAX_POINTS:,}")
        args[2] = int(num)
    try:
        values = _GRIDS[fn](*args)
    except ValueError as exc:
        raise ConfigError(key, grid, str(exc)) from None
    if not values:
        raise ConfigError(key, grid, _EMPTY)
    return values
