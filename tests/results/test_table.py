"""gdexp.results.table types a param column from its distinct values, each parsed once: the same
column as typing every value (what it did before), whatever the values and missing ones."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gdexp.results.table import _typed

TEXT = pd.Series(["a"]).dtype  # what pandas makes of strings: str (pandas 3), object (pandas 2)


def every_value(column: pd.Series) -> pd.Series:
    """The rule of table._typed, asked of every value."""
    column = column.where(column != "null", None)
    present = column.dropna()
    if present.empty:
        return column
    if present.isin(["True", "False", "true", "false"]).all():
        return column.map({"True": True, "true": True, "False": False, "false": False})
    if pd.to_numeric(present, errors="coerce").isna().any():
        return column
    out = pd.to_numeric(column, errors="coerce")
    integral = np.isfinite(out).all() and (out == out.round()).all()
    if integral and not present.astype(str).str.contains(r"[.eE]").any():
        return out.astype("int64")
    return out.astype(float)


@pytest.mark.parametrize("dtype", [object, TEXT])
@pytest.mark.parametrize("values", [
    ["1", "2", "1", None], ["0.1", "1e-3", "0.1", np.nan], ["1.0", "2"], ["1e400", "5", "-0.0"],
    ["9007199254740993", "1"], ["9007199254740993", None],  # past float's integers: float where one is missing
    ["18446744073709551615", "1"], ["18446744073709551615", "-1"],  # uint64; with a negative: no one integer type
    ["nan", "1", "inf"], ["true", "False", None], ["null", "3", "null"], ["null"], [None, np.nan],
    ["a", "1", "a"], ["[1, 2]", None], ["0x10", "1"], [" 1", "2"],
])
def test_a_param_column_is_typed_as_every_value_says(values, dtype):
    column = pd.Series(values * 40, dtype=dtype)
    typed, want = _typed(column.copy()), every_value(column.copy())
    pd.testing.assert_series_equal(typed, want, check_exact=True)
    if want.dtype == object:  # None and NaN both pass assert_series_equal
        assert typed.map(type).tolist() == want.map(type).tolist()
