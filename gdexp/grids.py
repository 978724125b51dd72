"""Grid functions in sweep overrides: logspace, linspace and a float range that behaves.

Hydra's basic sweeper has no log-spaced grid, and its float `range()` yields
0.30000000000000004 and includes the stop value. These expand to plain comma
lists of clean decimals before Hydra parses them.
"""
from __future__ import annotations

import math
import re

import numpy as np

_CALL = re.compile(r"^(?P<key>[^=]+)=(?P<fn>logspace|linspace|range)\((?P<args>[^()]*)\)$")
_SIGNIFICANT = 12  # digits kept: far below a double's noise, far above any grid's meaning


def clean(value: float) -> str:
    """The shortest decimal that names value to 12 significant digits.

    >>> clean(0.1 + 0.2), clean(10 ** -3.0), clean(1e-05), clean(1.0)
    ('0.3', '0.001', '1e-05', '1')
    """
    return f"{float(value):.{_SIGNIFICANT}g}"


def logspace(start: float, stop: float, num: int) -> list[float]:
    """num values from start to stop (both included), evenly spaced in log10.

    >>> logspace(1e-4, 1, 5)
    [0.0001, 0.001, 0.01, 0.1, 1.0]
    """
    if start <= 0 or stop <= 0:
        raise ValueError(f"logspace needs positive bounds, got ({start}, {stop})")
    return [float(clean(v)) for v in np.logspace(math.log10(start), math.log10(stop), int(num))]


def linspace(start: float, stop: float, num: int) -> list[float]:
    """num values from start to stop, both included, evenly spaced.

    >>> linspace(0, 1, 6)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    return [float(clean(v)) for v in np.linspace(start, stop, int(num))]


def frange(start: float, stop: float, step: float = 1.0) -> list[float]:
    """Python's range() for floats: the stop is excluded, values are clean.

    >>> frange(0.1, 0.4, 0.1)
    [0.1, 0.2, 0.3]
    """
    if step == 0:
        raise ValueError("range step must not be 0")
    # The count, with a little slack for values like (0.4 - 0.1) / 0.1 = 2.9999999999999996.
    n = max(0, math.ceil((stop - start) / step - 1e-9))
    return [float(clean(start + i * step)) for i in range(n)]


_GRIDS = {"logspace": logspace, "linspace": linspace, "range": frange}


def expand(override: str) -> str:
    """`key=logspace(a,b,n)` (or linspace, float range) -> `key=v1,v2,...`; others unchanged.

    Integer ranges are left to Hydra, which handles them exactly.

    >>> expand("optimizer.lr=logspace(1e-3,1e-1,3)")
    'optimizer.lr=0.001,0.01,0.1'
    >>> expand("budget.max_iters=range(1,4)")
    'budget.max_iters=range(1,4)'
    """
    match = _CALL.match(override.strip())
    if not match:
        return override
    key, fn, raw = match["key"], match["fn"], [a.strip() for a in match["args"].split(",")]
    if fn == "range" and all(re.fullmatch(r"[+-]?\d+", a) for a in raw):
        return override
    try:
        values = _GRIDS[fn](*(float(a) for a in raw))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{override}: {exc}") from None
    if not values:
        raise ValueError(f"{override}: the grid is empty")
    return f"{key}=" + ",".join(clean(v) for v in values)
