"""Runs the tracking store could not take: kept on disk, recorded later by `gdexp resume`
(gdexp.commands.resume).

When the store stops answering (past the client's bounded retries), a job
writes what it would have sent into `<sweep or run folder>/gdexp-unrecorded/<entry>/`:
run.json (the run's tags, params and every metric point with its timestamp,
its final status, and the store, experiment, parent and run ids) and the
artifacts config.yaml, result.json and curve.parquet. A sweep that could not
close its parent adds parent.json. `gdexp resume FOLDER` replays them: into the
run that was already created when there is one (MLflow drops metric points it
already has, and accepts a param logged again with the same value), else a new
run under the same parent; then it closes the parents. A recorded entry moves
to gdexp-recorded/, so resuming twice records nothing twice.
"""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from gdexp.tracking import content
from gdexp.tracking.store import experiment_id

SPOOL = "gdexp-unrecorded"
DONE = "gdexp-recorded"


def keep_run(folder: Path, store: dict, run_id: str | None, spec, traj, error: str | None,
             curve_points: int, now: int) -> Path:
    """Write one run's record to `folder`/SPOOL/<config hash>-<id>/; returns that folder.

    Args:
        store: {"uri", "experiment", "parent_id"} the run belongs to.
        traj: the finished descent, or None when the descent itself raised (`error`).
        now: the metrics' timestamp (ms), the one of the attempt that failed: points
            it did record are then the same points, which MLflow does not add twice.
    """
    entry = Path(folder) / SPOOL / f"{spec.config_hash}-{(run_id or uuid.uuid4().hex)[:12]}"
    (entry / "artifacts").mkdir(parents=True, exist_ok=True)
    record = {**store, "run_id": run_id, "run_name": spec.run_name,
              "tags": content.identity_tags(spec, store.get("parent_id")),
              "params": content.params(spec.config), "metrics": [], "status": "FAILED"}
    if traj is not None:
        record["metrics"] = content.run_metrics(spec, traj, curve_points, now)
        record["tags"].update(content.status_tags(traj))
        record["status"] = "FINISHED"
        content.write_artifacts(entry / "artifacts", spec, traj)
    if error:
        record["tags"].update(content.error_tag(error))
    (entry / "run.json").write_text(json.dumps(record, indent=1) + "\n")
    return entry


def keep_parent(sweep_dir: Path, uri: str, parent_id: str) -> Path:
    """Note that a sweep's parent run is still to be closed."""
    path = Path(sweep_dir) / SPOOL / "parent.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"uri": uri, "parent_id": parent_id}) + "\n")
    return path


def kept(folder: Path) -> list[Path]:
    """The run.json of every run still to be recorded under `folder`."""
    return sorted(Path(folder).glob(f"**/{SPOOL}/*/run.json"))


def resume_message(count: int, total: int | None, uri: str, reason: str, folder: Path) -> str:
    """What the user sees: how many, why, where they are kept, the command that records them."""
    of = f" of {total}" if total is not None else ""
    return (f"gdexp: {count}{of} run{'s' if count != 1 else ''} could not be recorded in {uri} ({reason}).\n"
            f"Nothing is lost: they are kept under {Path(folder) / SPOOL}/.\n"
            f"Once the store answers again, record them (and close the sweep) with:\n"
            f"  gdexp resume {folder}")


def replay(cl, record: dict, artifacts: Path) -> str:
    """Record one kept run: into the run already created when there is one, else a new run
    under the same parent; returns its run id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    run_id = record["run_id"]
    if run_id:
        try:
            if cl.get_run(run_id).info.status == "FINISHED":
                return run_id  # recorded after all (the answer to the last request was lost)
        except MlflowException:
            run_id = None  # not in this store: record it anew
    if not run_id:
        exp = experiment_id(cl, record["experiment"])
        run_id = cl.create_run(exp, run_name=record["run_name"], tags=record["tags"]).info.run_id
    cl.log_batch(run_id, metrics=[Metric(*m) for m in record["metrics"]],
                 params=[Param(k, v) for k, v in record["params"].items()],
                 tags=[RunTag(k, v) for k, v in record["tags"].items()])
    if any(artifacts.iterdir()):
        cl.log_artifacts(run_id, str(artifacts))
    cl.set_terminated(run_id, status=record["status"])
    return run_id


def short_reason(exc: BaseException) -> str:
    """The gist of a store error: 'Connection refused', not a page of urllib3's repr."""
    text = getattr(exc, "message", None) or str(exc)
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+|too many \d+ error responses|timed out", text)
    return found.group(0) if found else text.splitlines()[0][:200]
