"""A whole MLflow store as plain data, to compare two stores written by two ways of running the same sweep.

Used by tests/commands/test_api.py (the CLI against gdexp.run/gdexp.sweep) and
benchmarks/compare_stores.py (the code before issue 10 against today's).
Runs are keyed by run name (ids differ from store to store); a child's
parent is named by the parent's run name.
"""
from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file otherwise

# Tags that differ between any two sweeps, however they were run: where and when.
VOLATILE_TAGS = ("mlflow.parentRunId", "mlflow.user", "gdexp.sweep_dir")


def snapshot(uri: str, curve_points: bool = True) -> dict[str, dict]:
    """Every run of every experiment: run name -> its content.

    Each run: status, experiment name, parent (run name), params, metrics (latest
    values), histories (metric -> [(step, value)]), tags (VOLATILE_TAGS left out),
    artifacts (path -> content: config.yaml as text, result.json parsed,
    curve.parquet as column -> list, summary.csv as records without ids).

    Raises:
        AssertionError: two runs share a name (they could not be matched).
    """
    from mlflow import MlflowClient

    cl = MlflowClient(tracking_uri=uri)
    experiments = {e.experiment_id: e.name for e in cl.search_experiments()}
    runs = cl.search_runs(list(experiments), max_results=50_000)
    names = {r.info.run_id: r.info.run_name for r in runs}
    assert len(set(names.values())) == len(names), f"run names repeat in {uri}"
    out = {}
    for r in runs:
        out[r.info.run_name] = {
            "status": r.info.status,
            "experiment": experiments[r.info.experiment_id],
            "parent": names.get(r.data.tags.get("mlflow.parentRunId")),
            "params": dict(r.data.params),
            "metrics": dict(r.data.metrics),
            "histories": {k: [(m.step, m.value) for m in sorted(cl.get_metric_history(r.info.run_id, k),
                                                                 key=lambda m: m.step)]
                          for k in r.data.metrics} if curve_points else {},
            "tags": {k: v for k, v in r.data.tags.items() if k not in VOLATILE_TAGS},
            "artifacts": _artifacts(cl, r.info.run_id),
        }
    return out


def differences(a: dict, b: dict, path: str = "") -> list[str]:
    """Where two snapshots (or any nested plain data) differ: one line per leaf, NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        lines = [f"{path}/{k}: only in the first ({_short(a[k])})" for k in a if k not in b]
        lines += [f"{path}/{k}: only in the second ({_short(b[k])})" for k in b if k not in a]
        return lines + [line for k in a if k in b for line in differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [line for i, (x, y) in enumerate(zip(a, b)) for line in differences(x, y, f"{path}[{i}]")]
    if _same(a, b):
        return []
    return [f"{path}: {_short(a)} != {_short(b)}"]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and a == b)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _artifacts(cl, run_id: str, folder: str | None = None) -> dict:
    import pandas as pd

    out = {}
    for item in cl.list_artifacts(run_id, folder):
        if item.is_dir:
            out.update(_artifacts(cl, run_id, item.path))
            continue
        local = Path(cl.download_artifacts(run_id, item.path))
        name = Path(item.path).name
        if name.endswith(".parquet"):
            out[item.path] = {k: list(v) for k, v in pd.read_parquet(local).to_dict("list").items()}
        elif name.endswith(".json"):
            out[item.path] = json.loads(local.read_text())
        elif name == "summary.csv":  # the sweep's table: its ids are the store's own
            table = pd.read_csv(io.StringIO(local.read_text()))
            out[item.path] = table.drop(columns=[c for c in ("run_id", "sweep_id") if c in table]) \
                .sort_values("run_name").to_dict("records")
        else:
            out[item.path] = local.read_text()
    return out
