"""What a run is in MLflow: its params, metrics, tags and artifact files, built from a RunSpec and a Result.

Pure functions (no MLflow import): the writers (record.py), the runs kept on
disk (pending.py) and the summary rows a sweep tabulates all take their
content from here, so a run is the same whichever way it reaches the store.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

from gdexp.core import stability
from gdexp.core.outcomes import FAILED, UNRECORDED
from gdexp.core.result import Result
from gdexp.results.text import list_text
from gdexp.results.ties import rtol_of
from gdexp.tracking.sampling import sample_steps
from gdexp.tracking import TAG
# MLflow's limits (mlflow.utils.validation): a longer param value is cut with only a warning.
from gdexp.tracking.fast.fence import MAX_PARAM_LENGTH, MAX_TAG_LENGTH

# A param value too long for MLflow is logged as this stand-in; load_runs reads the full
# value from the run's config.yaml.
STAND_IN = "gdexp:too-long"

# The columns of curve.parquet besides each parameter's name (Loss.param_names).
CURVE_COLUMNS = ("step", "loss", "grad_norm")


# How a run is watched, not what it is (gdexp.tracking.live): left out of its record (params,
# metrics, config.yaml), which is then the same whatever the setting.
WATCH_KEYS = ("live_every",)


def recorded(config: dict) -> dict:
    """The config as a run's record holds it: without the tracking keys in WATCH_KEYS.

    >>> recorded({"seed": 0, "tracking": {"curve_points": 320, "live_every": 10.0}})
    {'seed': 0, 'tracking': {'curve_points': 320}}
    """
    tracking = config.get("tracking")
    if not isinstance(tracking, dict) or not any(k in tracking for k in WATCH_KEYS):
        return config
    return {**config, "tracking": {k: v for k, v in tracking.items() if k not in WATCH_KEYS}}


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Dotted keys of a nested config, values as they are (lists stay lists).

    >>> flatten({"loss": {"name": "booth"}, "init": None, "x": [1.0, 2]})
    {'loss.name': 'booth', 'init': None, 'x': [1.0, 2]}
    """
    out: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def param_text(value) -> str:
    """A config value as an MLflow param, in the form a user types it: a list as ``[1,100]``
    (JSON without spaces, whole numbers without ``.0``: gdexp.results.text.list_text,
    the form of run names and group labels, so ``params.`loss.eigenvalues` = '[1,100]'``
    finds the runs), null as ``null``, the rest as str().

    A value longer than MLflow's 6,000 characters becomes a short stand-in
    naming its length and checksum (MLflow would cut it with only a warning).

    >>> param_text([1.0, 100.0]), param_text([0.5, [2.0, "a"]]), param_text(None), param_text(0.1)
    ('[1,100]', '[0.5,[2,"a"]]', 'null', '0.1')
    >>> param_text(list(range(2000)))[:40]
    'gdexp:too-long len=8891 sha256=494b15107'
    """
    text = list_text(value) if isinstance(value, (list, tuple)) else "null" if value is None else str(value)
    if len(text) <= MAX_PARAM_LENGTH:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{STAND_IN} len={len(text)} sha256={digest} (the full value is in config.yaml)"


def params(config: dict) -> dict[str, str]:
    """The MLflow params of a run: its whole config (as `recorded`), flattened."""
    return {key: param_text(value) for key, value in flatten(recorded(config)).items()}


def numeric_params(config: dict, varied: tuple[str, ...] = ()) -> dict[str, float]:
    """The numeric scalars (not bools) also logged as metrics: ``optimizer.lr`` and the keys the
    sweep varies (`varied`: dotted keys, or a config group a search samples: every key under it). MLflow
    compares params as strings, so only metrics filter (``metrics.`optimizer.lr` > 0.01``)
    and chart on numeric axes; a constant would be one more chart of a single bar.

    >>> numeric_params({"optimizer": {"lr": 0.1, "momentum": 0.9}, "seed": 3, "stopping": {"maxiter": 10}},
    ...                ("seed",))
    {'optimizer.lr': 0.1, 'seed': 3.0}
    """
    def varies(key: str) -> bool:
        return key == "optimizer.lr" or any(key == k or key.startswith(f"{k}.") for k in varied)

    return {key: float(v) for key, v in flatten(recorded(config)).items()
            if varies(key) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def identity_tags(spec, parent_id: str | None = None) -> dict[str, str]:
    """The tags a run is created with: what it is, the sweep it belongs to, and MLflow's
    standard tags (`mlflow.source.*`, `mlflow.user`) that fill the UI's Source and User columns."""
    from gdexp import __version__
    from gdexp.tracking.provenance import standard_tags

    tags = {**standard_tags(), f"{TAG}config_hash": spec.config_hash, f"{TAG}version": __version__}
    if spec.loss.data_sha256():
        tags[f"{TAG}data_sha256"] = spec.loss.data_sha256()
    if getattr(spec.loss, "source_sha256", None):  # a user's loss: the file its code is in
        tags[f"{TAG}source_sha256"] = spec.loss.source_sha256
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    return tags


# The tags of a run's dataset input: the data trains the run (MLflow's `mlflow.data.context`).
DATASET_INPUT_TAGS = {"mlflow.data.context": "training"}


def dataset(spec) -> dict | None:
    """The run's data set as MLflow records it (`mlflow.log_input`: the UI's Dataset column):
    name, digest (the first 12 hex digits of its SHA-256) and source; None without data."""
    source, sha256 = spec.loss.data_source(), spec.loss.data_sha256()
    if not source or not sha256:
        return None
    name = source.removeprefix("sklearn.datasets.load_") if source.startswith("sklearn.") else Path(source).name
    kind = "code" if source.startswith("sklearn.") else "local"
    return {"name": name, "digest": sha256[:12], "source_type": kind, "source": json.dumps({"uri": source})}


def status_tags(result: Result) -> dict[str, str]:
    """gdexp.status, gdexp.diverged, gdexp.stop_reason, for a diverged run where and how, and for
    a pruned one gdexp.pruned_step."""
    tags = {f"{TAG}status": result.status, f"{TAG}diverged": str(result.diverged).lower(),
            f"{TAG}stop_reason": result.stop_reason}
    if result.diverged:
        tags[f"{TAG}diverged_step"] = str(result.diverged_step)
        tags[f"{TAG}divergence"] = result.divergence
    if result.pruned_step is not None:
        tags[f"{TAG}pruned_step"] = str(result.pruned_step)
    return tags


def error_tag(error: str) -> dict[str, str]:
    """The tag a FAILED run carries: its error, cut to MLflow's tag limit."""
    return {f"{TAG}error": error[:MAX_TAG_LENGTH - 1000]}


def run_metrics(spec, result: Result, curve_points: int, now: int | None = None) -> list[tuple]:
    """(key, value, timestamp ms, step) of the sampled curves, the summary metrics and the
    numeric params that vary in the sweep (numeric_params).

    Curves are sampled to `curve_points` steps (gdexp.tracking.sampling). A point that is
    nan or inf is left out of MLflow's curve: a curve whose latest value is NaN
    makes the MLflow UI hide its chart, and MLflow would store inf as 1.8e308.
    The run's tags say where and how it diverged; curve.parquet keeps every step.
    """
    now = int(time.time() * 1000) if now is None else now
    keep = [result.best_step] + ([result.iterations] if result.diverged else [])
    steps = sample_steps(result.loss, curve_points, keep)
    curves = [("loss", result.loss), ("grad_norm", result.grad_norm)]
    if result.lr is not None:  # under a schedule: the rate actually used, step by step
        curves.append(("lr", result.lr))
    metrics = [(name, v, now, int(s)) for name, curve in curves
               for s, v in zip(steps.tolist(), curve[steps].tolist()) if math.isfinite(v)]
    for name, (at, values) in result.events.items():
        chosen = sample_steps(values, curve_points)
        metrics += [(name, v, now, int(s)) for s, v in zip(at[chosen].tolist(), values[chosen].tolist())
                    if math.isfinite(v)]
    metrics += [(name, value, now, 0) for name, value in summary_metrics(spec, result).items()]
    metrics += [(name, value, now, 0) for name, value in numeric_params(spec.config, spec.varied).items()]
    return metrics


def summary_metrics(spec, result: Result) -> dict[str, float]:
    """final_loss, best_loss, iterations, steps_to_best (at summary.rtol: what breaks ties between
    learning rates; not for a diverged run), and the closed-form lr limits where known.

    All finite, so sorting and filtering in the UI work: a run that blew up
    reports its last finite loss (its tags say it diverged).
    """
    out = {"final_loss": result.final_loss, "best_loss": result.best_loss,
           "iterations": float(result.iterations)}
    if not result.diverged:  # a diverged run's final value is no answer to reach
        out["steps_to_best"] = float(result.steps_to_best(rtol_of(spec.config)))
    if result.lr is None:  # a constant rate; under a schedule `lr` is the curve of rates used
        out["lr"] = spec.lr
    out.update(theory_metrics(spec))
    return {k: v for k, v in out.items() if np.isfinite(v)}


def theory_metrics(spec) -> dict[str, float]:
    """The closed-form learning-rate limits of the run's own optimizer on a loss with a constant
    Hessian (gdexp.core.stability): ``lr_max_stable`` (gd, momentum, nesterov; weight decay
    shifts the eigenvalues), ``lr_optimal`` (gd, momentum) and, for momentum, Polyak's
    ``momentum_optimal``. None of them for adam, rmsprop, adagrad: no learning rate bounds
    their stability."""
    extremes = spec.loss.hessian_extremes()
    if extremes is None:
        return {}
    lo, hi = extremes
    optimizer = spec.config["optimizer"]
    name = optimizer["name"]
    out = {"lr_max_stable": stability.lr_max_stable(name, optimizer, hi),
           "lr_optimal": stability.lr_optimal(name, optimizer, lo, hi)}
    if name == "momentum":
        out["momentum_optimal"] = stability.momentum_optimal(optimizer, lo, hi)
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


def result_dict(spec, result: Result) -> dict:
    """The content of result.json (non-finite numbers become null: strict JSON).

    ``x0`` is the start point (scipy's name), ``x`` the final parameters.
    """
    return {
        "status": result.status,
        "stop_reason": result.stop_reason,
        "iterations": result.iterations,
        "final_loss": _json_number(result.final_loss),
        "best_loss": _json_number(result.best_loss),
        "best_step": result.best_step,
        "diverged_step": result.diverged_step,
        "divergence": result.divergence,
        "pruned_step": result.pruned_step,
        "param_names": list(spec.loss.param_names),
        "x0": [_json_number(v) for v in spec.x0],
        "x": [_json_number(v) for v in result.x],
        "config_hash": spec.config_hash,
    }


def curve_table(spec, result: Result) -> dict[str, np.ndarray]:
    """curve.parquet's columns: step, loss, grad_norm; lr under a schedule; the measurements
    taken at some steps only (val_loss, val_accuracy, train_loss, sharpness, 2/lr: NaN at
    the other steps); then each parameter by its name (losses of at most MAX_TRACKED_DIM
    parameters)."""
    n = result.iterations + 1
    curve = {"step": np.arange(n), "loss": result.loss, "grad_norm": result.grad_norm}
    if result.lr is not None:
        curve["lr"] = result.lr
    for name, (at, values) in result.events.items():  # measured at some steps: NaN elsewhere
        column = np.full(n, np.nan)
        column[at] = values
        curve[name] = column
    if result.path is not None:
        curve.update({name: np.ascontiguousarray(result.path[:, j])
                      for j, name in enumerate(spec.loss.param_names)})
    return curve


def write_artifacts(folder: Path, spec, result: Result) -> None:
    """config.yaml, result.json and curve.parquet (every step) into `folder`."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: 10x faster
    (folder / "config.yaml").write_text(yaml.dump(recorded(spec.config), Dumper=dumper, sort_keys=False))
    (folder / "result.json").write_text(json.dumps(result_dict(spec, result), indent=2) + "\n")
    # No dictionary encoding (float curves never repeat: numpy-random floats cost it 3x the
    # write) and no column statistics (nothing filters on them): the same file, read back alike.
    columns = curve_table(spec, result)
    table = pa.Table.from_arrays([arrow_column(pa, c) for c in columns.values()], names=list(columns))
    pq.write_table(table, folder / "curve.parquet", use_dictionary=False, write_statistics=False)


def arrow_column(pa, values: np.ndarray):
    """A numpy column as the Arrow array `pa.array` makes of it (NaN kept as NaN, not null), built
    on its buffer: pa.array looks for pandas types first and so imports pandas (~0.2 s of a
    single run). Other than numbers: pa.array.

    >>> import pyarrow as pa
    >>> arrow_column(pa, np.arange(3)).equals(pa.array(np.arange(3)))
    True
    >>> column = arrow_column(pa, np.array([1.0, np.nan]))
    >>> column.type, column.null_count, column.to_pylist()
    (DataType(double), 0, [1.0, nan])
    """
    values = np.asarray(values)
    if values.ndim != 1 or values.dtype.kind not in "iuf" or not values.dtype.isnative:
        return pa.array(values)
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def run_row(spec, run_id: str | None, result: Result | None, status: str | None = None,
            error: str | None = None, parent_id: str | None = None) -> dict:
    """The run as one summary row: what a job returns to its sweeper, and what the sweep's
    table is made of (the same columns gdexp.load_runs reads back from MLflow).

    Args:
        result: the descent's result; None when the run failed before it had one.
        status: overrides the result's status (``failed``, ``unrecorded``).
    """
    status = status or (result.status if result is not None else FAILED)
    row = {"run_id": run_id, "run_name": spec.run_name, "sweep_id": parent_id,
           "loss": spec.config["loss"]["name"], "optimizer": spec.config["optimizer"]["name"],
           "lr": spec.lr, "status": status, "diverged": False,
           "mlflow_status": {FAILED: "FAILED", UNRECORDED: None}.get(status, "FINISHED"),
           "error": error, "config_hash": spec.config_hash, "data_sha256": spec.loss.data_sha256()}
    if result is not None:
        row.update({"diverged": result.diverged, "diverged_step": result.diverged_step,
                    "divergence": result.divergence, "stop_reason": result.stop_reason,
                    "pruned_step": result.pruned_step,
                    **summary_metrics(spec, result), "iterations": result.iterations, "lr": spec.lr,
                    **{name: float(values[-1]) for name, (_, values) in result.events.items()}})
    else:
        row.update(theory_metrics(spec))
    return {**row, **params(spec.config)}


def _json_number(v):
    v = float(v)
    return v if np.isfinite(v) else None
