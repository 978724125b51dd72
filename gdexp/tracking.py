"""Everything gdexp writes to MLflow: run params, curves, tags, artifacts.

`import mlflow` costs most of a second, so it happens here only, lazily.
Runs are written through MlflowClient, never the fluent API: no process-wide
"active run" to collide with, and a parent run can be made in the launching
process while its jobs run in the same one.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from gdexp.core.sampling import sample_steps
from gdexp.core.result import Result
from gdexp.core.errors import ConfigError
from gdexp.guards import PARENT_ENV, http_client_defaults  # noqa: F401 - PARENT_ENV: a sweep's parent run, handed to its jobs

TAG = "gdexp."                       # prefix of every tag gdexp owns


def resolve_uri(configured: str | None, cwd: str | os.PathLike | None = None) -> str:
    """The tracking URI a run uses: MLFLOW_TRACKING_URI, then the config, then ./mlflow.db.

    A relative sqlite path is made absolute against `cwd` (default: the
    current folder) so every job of a sweep, whatever its working folder,
    writes to one store.

    >>> resolve_uri("sqlite:///runs/m.db", cwd="/data")
    'sqlite:////data/runs/m.db'
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri == "???":  # tracking=server without its address
        raise ConfigError("tracking.uri", None, "tracking=server needs the server's address: "
                          "tracking.uri=http://HOST:PORT (or MLFLOW_TRACKING_URI)")
    base = Path(cwd or os.getcwd())
    if not uri:
        return f"sqlite:///{(base / 'mlflow.db').resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///'):]).resolve()}"
    return uri


def client(uri: str):
    from mlflow import MlflowClient

    http_client_defaults(uri)
    return MlflowClient(tracking_uri=uri)


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` means the store could not be reached (after the client's retries).

    MLflow wraps a refused connection, a timeout or too many 5xx answers in an
    MlflowException "API request to ... failed ..."; the requests error is its context.
    """
    import requests

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        message = getattr(exc, "message", None) or str(exc)
        if type(exc).__name__ == "MlflowException" and message.startswith("API request to ") and " failed " in message:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def experiment_id(cl, name: str) -> str:
    """The id of experiment `name`, created on first use.

    On a SQLite store its artifacts go beside the database file
    (<db folder>/mlartifacts/<name>), not into ./mlruns of whatever folder
    the first run happened to start in.
    """
    found = cl.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    uri = cl.tracking_uri
    if uri.startswith("sqlite:///"):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts" / slug).as_uri()
    try:
        return cl.create_experiment(name, artifact_location=location)
    except Exception:
        # Another process created it between our look-up and create.
        found = cl.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Dotted keys for MLflow params: {'optimizer': {'lr': 0.1}} -> {'optimizer.lr': '0.1'}.

    >>> flatten({"loss": {"name": "booth"}, "init": None, "x": [1.0, 2]})
    {'loss.name': 'booth', 'init': 'null', 'x': '[1.0, 2]'}
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)) or value is None:
            out[name] = json.dumps(value)
        else:
            out[name] = str(value)
    return out


def start_run(cl, exp_id: str, spec, parent_id: str | None = None, log_params: bool = True):
    """Create a run with the spec's identity tags (and params); returns its RunInfo.

    With log_params=False the params wait for `record`, which sends them with
    the curves in one request: for a run whose descent is already done.
    """
    info = cl.create_run(exp_id, run_name=spec.run_name, tags=identity_tags(spec, parent_id)).info
    if log_params:
        cl.log_batch(info.run_id, params=_params(spec))
    return info


def identity_tags(spec, parent_id: str | None = None) -> dict[str, str]:
    """The tags a run is created with: what it is, and the sweep it belongs to."""
    from gdexp import __version__

    tags = {f"{TAG}config_hash": spec.config_hash, f"{TAG}version": __version__}
    if spec.loss.data_sha256():
        tags[f"{TAG}data_sha256"] = spec.loss.data_sha256()
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    return tags


def _params(spec):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in flatten(spec.config).items()]


@contextmanager
def terminating(cl, run_id: str):
    """Close the run FINISHED, FAILED (error kept as a tag) or KILLED (Ctrl-C).

    A store that cannot be reached is not asked again (that would only repeat
    the client's retries): the error goes up with the run left as it was.
    """
    try:
        yield
    except KeyboardInterrupt:
        cl.set_terminated(run_id, status="KILLED")
        raise
    except BaseException as exc:
        if unreachable(exc):
            raise
        cl.set_tag(run_id, f"{TAG}error", f"{type(exc).__name__}: {exc}"[:7000])
        cl.set_terminated(run_id, status="FAILED")
        raise
    else:
        cl.set_terminated(run_id, status="FINISHED")


def record(cl, info, spec, traj: Result, curve_points: int, log_params: bool = False,
           now: int | None = None) -> None:
    """Log a finished descent: curves, summary metrics, status tags (params too
    when asked), in one request, then the artifacts.

    now: the metrics' timestamp in ms (default: now); a run kept on disk after a
    failed attempt keeps the same one, so recording it again adds no duplicate points.
    """
    from mlflow.entities import Metric, RunTag

    metrics = [Metric(*m) for m in run_metrics(spec, traj, curve_points, now)]
    tags = [RunTag(k, v) for k, v in status_tags(traj).items()]
    cl.log_batch(info.run_id, metrics=metrics, tags=tags, params=_params(spec) if log_params else [])
    local = local_dir(info.artifact_uri)
    if local is not None:
        # A local store: write the files in place, skipping MLflow's copy.
        local.mkdir(parents=True, exist_ok=True)
        write_artifacts(local, spec, traj)
    else:
        with tempfile.TemporaryDirectory(prefix="gdexp-") as tmp:
            write_artifacts(Path(tmp), spec, traj)
            cl.log_artifacts(info.run_id, tmp)


def run_metrics(spec, traj: Result, curve_points: int, now: int | None = None) -> list[tuple]:
    """(key, value, timestamp, step) of the sampled curves and the summary metrics."""
    now = int(time.time() * 1000) if now is None else now
    keep = [traj.best_step] + ([traj.iterations] if traj.diverged else [])
    steps = sample_steps(traj.loss, curve_points, keep)
    metrics = [(name, _finite_or_nan(v), now, int(s))
               for name, curve in (("loss", traj.loss), ("grad_norm", traj.grad_norm))
               for s, v in zip(steps.tolist(), curve[steps].tolist())]
    metrics += [(name, value, now, 0) for name, value in summary_metrics(spec, traj).items()]
    return metrics


def local_dir(artifact_uri: str) -> Path | None:
    """The folder behind a local artifact URI (file://...), None for remote stores."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and artifact_uri.startswith("/"):
        return Path(artifact_uri)
    return None


def summary_metrics(spec, traj: Result) -> dict[str, float]:
    """final_loss, best_loss, iterations, and the closed-form lr limits where known.

    All finite, so sorting and filtering in the UI work: a run that blew up
    reports its last finite loss (its tags say it diverged).
    """
    out = {"final_loss": traj.final_loss, "best_loss": traj.best_loss,
           "iterations": float(traj.iterations)}
    extremes = spec.loss.hessian_extremes()
    if extremes is not None:
        lo, hi = extremes
        out["lr_max_stable"] = 2.0 / hi
        out["lr_optimal"] = 2.0 / (lo + hi)
    return {k: v for k, v in out.items() if np.isfinite(v)}


def status_tags(traj: Result) -> dict[str, str]:
    tags = {f"{TAG}status": traj.status, f"{TAG}diverged": str(traj.diverged).lower(),
            f"{TAG}stop_reason": traj.stop_reason}
    if traj.diverged:
        tags[f"{TAG}diverged_step"] = str(traj.diverged_step)
        tags[f"{TAG}divergence"] = traj.divergence
    return tags


def result_dict(spec, traj: Result) -> dict:
    """The content of result.json (non-finite numbers become null: strict JSON)."""
    return {
        "status": traj.status,
        "stop_reason": traj.stop_reason,
        "iterations": traj.iterations,
        "final_loss": _json_number(traj.final_loss),
        "best_loss": _json_number(traj.best_loss),
        "best_step": traj.best_step,
        "diverged_step": traj.diverged_step,
        "divergence": traj.divergence,
        "x0": [_json_number(v) for v in spec.x0],
        "final_params": [_json_number(v) for v in traj.x],
        "config_hash": spec.config_hash,
    }


def write_artifacts(folder: Path, spec, traj: Result) -> None:
    """config.yaml, result.json and curve.parquet (every step) into `folder`."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: 10x faster
    (folder / "config.yaml").write_text(yaml.dump(spec.config, Dumper=dumper, sort_keys=False))
    (folder / "result.json").write_text(json.dumps(result_dict(spec, traj), indent=2) + "\n")
    curve = {"step": np.arange(traj.iterations + 1), "loss": traj.loss, "grad_norm": traj.grad_norm}
    if traj.path is not None:
        curve.update({f"x{j}": np.ascontiguousarray(traj.path[:, j]) for j in range(traj.path.shape[1])})
    pq.write_table(pa.table(curve), folder / "curve.parquet")


def _finite_or_nan(v: float) -> float:
    # MLflow stores +/-inf as +/-1.8e308 without a word; nan round-trips as nan.
    v = float(v)
    return v if np.isfinite(v) else float("nan")


def _json_number(v):
    v = float(v)
    return v if np.isfinite(v) else None
