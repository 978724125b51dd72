"""A finished run as the fast path writes it (RunRecord), and its rows, prepared and checked as
MLflow's SqlAlchemyStore prepares and checks them."""
from __future__ import annotations

import math
import re
import time
import uuid
from dataclasses import dataclass, field
from gdexp.tracking.fast import fence

PARENT_TAG = "mlflow.parentRunId"

RUN_NAME_TAG = "mlflow.runName"

USER_TAG = "mlflow.user"

TERMINAL = ("FINISHED", "FAILED", "KILLED")

LIVE = "RUNNING"  # a run written while it descends (gdexp.tracking.live), over which its final record is written

# A local folder as gdexp's experiments have it (file:///..., no query, no trailing slash).
_PLAIN_LOCATION = re.compile(r"^(file://)?/[\w./\-]*[\w\-]$")

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")

_INF = 1.7976931348623157e308  # what MLflow stores for +/-inf (SQL has no infinity)

@dataclass
class RunRecord:
    """One finished run, as `write_runs` / `write_runs_via_client` write it.

    Attributes:
        experiment_id: the experiment (must exist and be active).
        run_name: None takes the `mlflow.runName` tag, else a random name, as MLflow does.
        tags: run tags, e.g. `mlflow.parentRunId` for a child run; set when the run is created.
        params: param key -> value; values are stringified with str() like MlflowClient does.
        metrics: (key, value, timestamp_ms, step) points, in logging order (order matters
            only for MLflow's latest-value rule on exact ties, see `write_runs`).
        status: "FINISHED", "FAILED" or "KILLED"; "RUNNING" for a live run (write_runs with
            replace=True), whose end_time is then left empty, as MLflow leaves a RUNNING run's.
        start_time, end_time: ms since the epoch; None (or 0) means now, like MlflowClient.
        run_id: 32 hex digits, made here so that a caller knows the run's id (and its
            artifact URI, `artifact_uri`) before writing. The client path cannot choose
            ids: there MLflow makes new ones (returned by `write_runs_via_client`).
    """

    experiment_id: str
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    status: str = "FINISHED"
    start_time: int | None = None
    end_time: int | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

def artifact_uri(artifact_location: str, run_id: str) -> str:
    """The run's artifact URI, computed as MLflow's create_run does.

    >>> artifact_uri("file:///data/mlartifacts/gdexp", "abc")
    'file:///data/mlartifacts/gdexp/abc/artifacts'
    """
    if _PLAIN_LOCATION.match(artifact_location) and _RUN_ID.match(run_id):
        # What append_to_uri_path gives for a local folder's URI or path (the test compares).
        return f"{artifact_location}/{run_id}/artifacts"
    from mlflow.utils.uri import append_to_uri_path

    return append_to_uri_path(artifact_location, run_id, "artifacts")

def _prepare(record: RunRecord, location: str, live: bool = False):
    """The rows of one run: (runs row, tag rows, param rows, latest rows, metric rows);
    live: a RUNNING record is allowed."""
    run_id = record.run_id
    fence.validate_run_id(run_id)
    if record.status not in TERMINAL and not (live and record.status == LIVE):
        from mlflow.entities import RunStatus
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        RunStatus.from_string(record.status)  # MLflow's error for a name it does not know
        raise MlflowException(f"status must be one of {TERMINAL}, got {record.status!r}",
                              INVALID_PARAMETER_VALUE)
    tags = checked_tags(record.tags)
    name_tag = tags.get(RUN_NAME_TAG)
    if record.run_name and name_tag and record.run_name != name_tag:
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        raise MlflowException(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
            f"different values (run_name='{record.run_name}', mlflow.runName='{name_tag}').",
            INVALID_PARAMETER_VALUE)
    name = record.run_name or name_tag or fence.random_run_name()
    if not name_tag:
        tags[RUN_NAME_TAG] = name
    now = int(time.time() * 1000)  # MLflow's get_current_time_millis
    run = {"run_uuid": run_id, "name": name, "source_type": "UNKNOWN", "source_name": "",
           "entry_point_name": "", "user_id": record.tags.get(USER_TAG, "unknown"),
           "status": record.status, "start_time": record.start_time or now,
           "end_time": None if record.status == LIVE else record.end_time or now, "deleted_time": None, "source_version": "",
           "lifecycle_stage": "active", "artifact_uri": artifact_uri(location, run_id),
           "experiment_id": int(record.experiment_id)}
    tag_rows = [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()]
    param_rows = [{"key": k, "value": v, "run_uuid": run_id} for k, v in checked_params(record.params).items()]
    points, latest = _metric_rows(run_id, record.metrics)
    latest_rows = [{"key": k, "value": v, "timestamp": ts, "step": step, "is_nan": nan, "run_uuid": run_id}
                   for k, (step, ts, v, nan) in latest.items()]
    return run, tag_rows, param_rows, latest_rows, points

_GOOD_KEYS: set = set()  # metric keys MLflow's validator accepted (a pure function of the key)


def _metric_rows(run_id: str, metrics) -> tuple[list[tuple], dict]:
    """Metric rows (key, value, timestamp, run_uuid, step, is_nan) and the latest point per key.

    The hot path (1.5 M points a sweep). A run whose points are all finite floats
    with int timestamps and steps and no repeated point (gdexp's runs) is handled
    by C-level passes (`_plain_rows`); any other goes point by point
    (`_checked_rows`). MLflow's own validators run on each new key and on any point
    that fails a cheap check, so the errors are MLflow's.
    """
    metrics = list(metrics)
    if not metrics:
        return [], {}
    if set(map(len, metrics)) != {4}:
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        raise MlflowException("a metric point is (key, value, timestamp, step)", INVALID_PARAMETER_VALUE)
    keys, values, stamps, steps = zip(*metrics)
    for key in set(keys) - _GOOD_KEYS:
        fence.validate_metric_name(key)  # the name and its length; the rest is checked per point
        _GOOD_KEYS.add(key)
    return _plain_rows(run_id, keys, values, stamps, steps) or _checked_rows(run_id, metrics)

def _plain_rows(run_id: str, keys, values, stamps, steps) -> tuple[list[tuple], dict] | None:
    """The common case in C-level passes; None when some point needs `_checked_rows`."""
    from itertools import groupby, repeat
    from operator import itemgetter

    n = len(keys)
    if not (set(map(type, values)) == {float} and set(map(type, stamps)) == {int}
            and set(map(type, steps)) == {int} and min(stamps) >= 0
            and all(map(math.isfinite, values))
            and len(set(zip(keys, stamps, steps, values))) == n):
        return None
    rows = list(zip(keys, values, stamps, repeat(run_id, n), steps, repeat(False, n)))
    latest: dict[str, tuple] = {}
    # max() keeps the first of equal maxima: MLflow's strict "newer than" comparison.
    for key, group in groupby(zip(keys, steps, stamps, values), key=itemgetter(0)):
        best = max(map(itemgetter(1, 2, 3), group))
        if key not in latest or best > latest[key][:3]:
            latest[key] = (*best, False)
    return rows, latest

def _checked_rows(run_id: str, metrics: list) -> tuple[list[tuple], dict]:
    """Point by point: conversions, NaN as 0 with is_nan, +/-inf as +/-1.797e308, repeats dropped."""
    rows: list[tuple] = []
    seen: set = set()
    latest: dict[str, tuple] = {}  # key -> (step, timestamp, stored value, is_nan)
    isnan, isinf = math.isnan, math.isinf
    for point in metrics:
        key, value, ts, step = point
        if type(value) is not float:
            value = _as_float(value, point)
        if type(ts) is not int or type(step) is not int or ts < 0:
            ts, step = _as_ints(point, value)
        if isnan(value):
            value, nan = 0.0, True
        else:
            nan = False
            if isinf(value):
                value = _INF if value > 0 else -_INF
        ident = (key, ts, step, value, nan)
        if ident in seen:
            continue
        seen.add(ident)
        rows.append((key, value, ts, run_id, step, nan))
        best = latest.get(key)
        if best is None or (step, ts, value) > best[:3]:
            latest[key] = (step, ts, value, nan)
    return rows, latest

def _as_float(value, point) -> float:
    """A metric value as MlflowClient.log_batch converts it (numpy scalars, ints, bools)."""
    from mlflow.tracking.metric_value_conversion_utils import convert_metric_value_to_float_if_possible

    converted = convert_metric_value_to_float_if_possible(value)
    if type(converted) is not float:
        fence.validate_metric(point[0], converted, point[2], point[3])  # raises MLflow's error
        converted = float(converted)
    return converted

def _as_ints(point, value) -> tuple[int, int]:
    """Timestamp and step as Python ints (numpy integers accepted), MLflow's error otherwise."""
    import operator

    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

    key, _, ts, step = point
    fence.validate_metric(key, value, ts, step)
    try:
        return operator.index(ts), operator.index(step)
    except TypeError:
        raise MlflowException(f"metric {key!r}: timestamp and step must be integers, got "
                              f"timestamp={ts!r}, step={step!r}", INVALID_PARAMETER_VALUE) from None

def checked_tags(tags: dict) -> dict[str, str]:
    """Tags through MLflow's tag validator (name rules, values cut to 8,000 characters)."""
    out = {}
    for idx, (key, value) in enumerate(tags.items()):
        key, value = fence.validate_tag(key, value, path=f"tags[{idx}]")
        out[key] = value
    return out

def checked_params(params: dict) -> dict[str, str]:
    """Params stringified (MlflowClient.log_batch: str(value)) and validated (cut to 6,000)."""
    out = {}
    for idx, (key, value) in enumerate(params.items()):
        key, value = fence.validate_param(key, str(value), path=f"params[{idx}]")
        out[key] = value
    return out
