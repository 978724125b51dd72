"""Values in the form a user types them on the command line, which gdexp writes everywhere (params,
run names, group labels). No pandas import: a single run's params use it."""
from __future__ import annotations

import json
import math
import sys

import numpy as np


def list_text(items) -> str:
    """A list in the form a user types it on the command line and gdexp writes it everywhere
    (params, run names, group labels): JSON without spaces, whole numbers without ``.0``.

    >>> list_text([1.0, 100.0]), list_text([0.25, [1, 2.0]]), list_text(["a", True, None])
    ('[1,100]', '[0.25,[1,2]]', '["a",true,null]')
    """
    def one(v) -> str:
        if isinstance(v, (list, tuple)):
            return list_text(v)
        if isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) and np.isfinite(v):
            return number_text(v)
        return json.dumps(_plain(v))

    return "[" + ",".join(one(v) for v in items) + "]"


def number_text(value: float) -> str:
    """Integers as integers; else the shortest repr that reads back exactly.

    >>> number_text(100.0), number_text(0.1), number_text(1e20)
    ('100', '0.1', '1e+20')
    """
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _plain(value):
    """A JSON-able value, every missing one (None, NaN, pandas' NA) as None."""
    pandas = sys.modules.get("pandas")  # not imported: no value can be its NA
    if value is None or (pandas is not None and value is pandas.NA) or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
