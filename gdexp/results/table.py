"""A sweep's runs as one typed table: the rows MLflow returns, or the rows its jobs returned.

gdexp.load_runs (read back from MLflow) and gdexp.sweep (the rows a sweep's
jobs returned, without asking the store again) give the same table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# Summary metrics every finished run has (the last two only for losses with a closed form).
SUMMARY_METRICS = ("final_loss", "best_loss", "iterations", "steps_to_best", "lr_max_stable", "lr_optimal")
# Measured at some steps (evaluations, sharpness): each run's last value (at its stop step).
MEASURED = ("val_loss", "val_accuracy", "train_loss", "train_accuracy", "sharpness", "2/lr", "stability_threshold",
            "preconditioned_sharpness")

# The first columns of the table, in this order; every param follows under its dotted key.
COLUMNS = ["run_id", "run_name", "experiment", "sweep_id", "loss", "optimizer", "lr", "status",
           "diverged", "diverged_step", "divergence", "stop_reason", "pruned_step", *SUMMARY_METRICS, *MEASURED,
           "mlflow_status", "error", "config_hash", "data_sha256", "source_sha256", "version", "start_time",
           "artifact_uri"]


def typed_table(rows: list[dict]) -> pd.DataFrame:
    """One row per run: COLUMNS, then every param under its dotted key, typed.

    Params (MLflow keeps them as strings) become numbers where every value is
    one, bools where every value is true/false, else stay strings (lists stay
    JSON); a logged null is missing. Sorted by loss, optimizer, lr, run name, run id.
    """
    return typed_frame(pd.DataFrame(rows))


def typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """typed_table of rows already in a frame (one row per run; a param a run lacks is NaN)."""
    params = sorted(c for c in frame.columns if c not in COLUMNS)
    frame = frame.reindex(columns=COLUMNS + params)
    for name in ("lr", *SUMMARY_METRICS, *MEASURED):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    frame["diverged"] = frame["diverged"].fillna(False).astype(bool)
    for name in ("diverged_step", "pruned_step", "iterations"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").round().astype("Int64")
    frame["start_time"] = pd.to_datetime(frame["start_time"], unit="ms", utc=True)
    for name in params:
        frame[name] = _typed(frame[name])
    order = ["loss", "optimizer", "lr", "run_name", "run_id"]
    return frame.sort_values(order, kind="stable", na_position="last").reset_index(drop=True)


def _typed(column: pd.Series) -> pd.Series:
    """A param column as numbers or bools where every logged value is one ('null' = missing)."""
    column = column.where(column != "null", None)
    present = column.dropna()
    if present.empty:
        return column
    if pd.api.types.infer_dtype(present, skipna=False) == "string":
        # Decided on the distinct strings, each parsed once: a sweep's column of 100,000
        # runs holds a few (the same answers as asking every value, each alone).
        present = present.drop_duplicates()
    if present.isin(["True", "False", "true", "false"]).all():
        return column.map({"True": True, "true": True, "False": False, "false": False})
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        return column  # a name, a list: the logged string (JSON for a list) is its value
    out = _numeric(column)
    integral = np.isfinite(out).all() and (out == out.round()).all()
    if integral and not present.astype(str).str.contains(r"[.eE]").any():
        return out.astype("int64")
    return out.astype(float)


def _numeric(column: pd.Series) -> pd.Series:
    """pd.to_numeric(column, errors="coerce") of a column of strings and missing values, each
    distinct string parsed once.

    to_numeric parses each value alone; what it returns them in (int64, float64, ...) it
    chooses by what it met, so the distinct strings are parsed with a missing value among them
    where the column has one: the same array type, the same value at each place.
    """
    if pd.api.types.infer_dtype(column, skipna=True) != "string":
        return pd.to_numeric(column, errors="coerce")
    codes, distinct = pd.factorize(column)  # a missing value: -1
    distinct = np.asarray(distinct, dtype=object)
    if (codes < 0).any():
        distinct = np.append(distinct, None)  # the last: codes -1 take it
    numbers = pd.to_numeric(pd.Series(distinct, dtype=object), errors="coerce").to_numpy()
    return pd.Series(numbers[codes], index=column.index, name=column.name)
