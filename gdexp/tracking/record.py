"""Writing one run to MLflow: created, descended, recorded, closed; kept on disk when the store is down."""
from __future__ import annotations

import logging
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from gdexp.core.outcomes import FAILED, UNRECORDED
from gdexp.core.result import Result
from gdexp.tracking import content
from gdexp.tracking.guards import local_dir
from gdexp.tracking.store import Store, unreachable

log = logging.getLogger(__name__)


def write_run(store: Store, spec, descent: Callable[[], Result], *, parent_id: str | None,
              keep_dir: Path, swallow: bool, done: bool = False, times: tuple[int, int] | None = None) -> dict:
    """Create the run, get its Result from `descent()`, record it, close it; return its row.

    Args:
        store: where the run goes.
        spec: the run (gdexp.specs.run_spec.RunSpec).
        descent: gives the run's Result (it may raise: the run is then FAILED).
        parent_id: the sweep's parent run, or None for a single run.
        keep_dir: the folder that holds runs the store could not take (gdexp-unrecorded/).
        swallow: print an error and return a failed row instead of raising
            (the run is FAILED in MLflow either way): in a sweep, the others go on.
        done: the descent already happened (a batched sweep), so params go to MLflow
            with the curves in one request; otherwise they are logged first.
        times: (start, end) of a descent that already happened, ms since the epoch: the
            run's start and end time (None: the run starts now and ends when closed).

    Returns:
        The run's summary row (gdexp.tracking.content.run_row).

    A store that does not answer (after the client's bounded retries) is not a
    failure of the run: it is descended anyway and kept on disk (pending.py),
    and this process stops asking that store.
    """
    if store.fast and not done and store.down is None:
        return _write_run_fast(store, spec, descent, parent_id=parent_id, keep_dir=keep_dir, swallow=swallow)
    info = result = None
    now = int(time.time() * 1000)  # the metrics' timestamp, kept if the run is kept on disk
    curve_points = spec.config["tracking"]["curve_points"]
    try:
        if store.down is not None:
            raise store.down
        info = start_run(store.client, store.experiment_id, spec, parent_id, log_params=not done,
                         start_time=times and times[0])
        with terminating(store.client, info.run_id, spec, end_time=times and times[1]):
            result = descent()
            log_result(store.client, info, spec, result, curve_points, log_params=done, now=now)
    except Exception as exc:
        if unreachable(exc):
            store.down = exc
            return _keep(store, spec, result, descent, info.run_id if info else None, parent_id, exc,
                         keep_dir, now)
        if not swallow or info is None:
            raise
        error = f"{type(exc).__name__}: {exc}"
        # One line, as the default launcher says it (gdexp.tracking.bulk); the run's tag holds the same.
        log.error(f"gdexp: run {spec.run_name} ({info.run_id}) FAILED: {error}")
        return content.run_row(spec, info.run_id, None, FAILED, error, parent_id)
    return content.run_row(spec, info.run_id, result, parent_id=parent_id)


def _write_run_fast(store: Store, spec, descent: Callable[[], Result], *, parent_id: str | None,
                    keep_dir: Path, swallow: bool) -> dict:
    """`write_run` below MLflow's API (gdexp.tracking.fast), for a store whose experiment was
    found by SQL: the same records as the client's calls, and no MLflow import for a run
    without a data set (a single run's ~2 s).

    The run is written RUNNING with its identity tags and params before it descends (each
    write one transaction, waited for while another process holds the store locked), then
    written over with its curves, status tags and end time (its files first, as a sweep's
    chunk), or FAILED with its error, or KILLED on Ctrl-C; a store that stops answering keeps
    it on disk, as the client's path does. A kill -9 mid-descent leaves it RUNNING, as the
    client's path does.
    """
    from gdexp.tracking.fast.records import LIVE, RunRecord, artifact_uri
    from gdexp.tracking.writes import note_open

    now = int(time.time() * 1000)
    record = RunRecord(store.experiment_id, spec.run_name, tags=content.identity_tags(spec, parent_id),
                       params=content.params(spec.config), status=LIVE, start_time=now)
    result = None
    closer = _FastCloser(store, record)
    try:  # known open before an interrupt held during the write lands: closed KILLED then
        write_fast(store, record, then=lambda: note_open(record.run_id, closer))
    except Exception as exc:
        if not unreachable(exc):
            raise
        store.down = exc
        return _keep(store, spec, None, descent, None, parent_id, exc, keep_dir, now)
    try:
        try:
            result = descent()
            folder = local_dir(artifact_uri(store.artifact_location, record.run_id))
            if folder is None:  # not a local folder: the files go through MLflow's client
                upload_files(store.client, record.run_id, spec, result)
            else:
                folder.mkdir(parents=True, exist_ok=True)
                content.write_artifacts(folder, spec, result)
            record.tags.update(content.status_tags(result))
            record.metrics = content.run_metrics(spec, result, spec.config["tracking"]["curve_points"], now)
            record.status, record.end_time = "FINISHED", int(time.time() * 1000)
            write_fast(store, record, then=closer.closed)  # an interrupt held meanwhile: it stays FINISHED
        except KeyboardInterrupt:
            if not closer.done:
                closer.set_terminated(record.run_id, status="KILLED")
            raise
        except Exception as exc:
            if unreachable(exc):
                raise
            error = f"{type(exc).__name__}: {exc}"
            closer.fail(error)
            if not swallow:
                raise
            log.error(f"gdexp: run {spec.run_name} ({record.run_id}) FAILED: {error}")
            return content.run_row(spec, record.run_id, None, FAILED, error, parent_id)
    except Exception as exc:
        if not unreachable(exc):
            raise
        store.down = exc
        return _keep(store, spec, result, descent, record.run_id, parent_id, exc, keep_dir, now)
    log_datasets(store, [(record.run_id, spec)])
    return content.run_row(spec, record.run_id, result, parent_id=parent_id)


def write_fast(store: Store, record, then: Callable[[], None] | None = None) -> None:
    """The record in one transaction, over whatever was written of it before (`write_runs`'
    replace: a RUNNING record allowed), whole (interrupts held until `then()` has run too), a
    locked store waited for."""
    from gdexp.tracking import interrupts
    from gdexp.tracking.fast.write import write_runs
    from gdexp.tracking.writes import wait_unlocked

    def write():
        with interrupts.deferred():
            write_runs(store.uri, [record], replace=True)
            if then is not None:
                then()

    wait_unlocked(write, store.uri)


class _FastCloser:
    """Closes a run written by `_write_run_fast`, as gdexp.tracking.writes.close_open_runs asks a
    client to: its record written over with the new status and end time (params and tags kept)."""

    def __init__(self, store: Store, record):
        self.store, self.record = store, record
        self.done = False

    def closed(self) -> None:
        """The run's final record is written: nothing left to close."""
        from gdexp.tracking.writes import forget_open

        self.done = True
        forget_open(self.record.run_id)

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        self.record.status, self.record.end_time = status, int(time.time() * 1000)
        write_fast(self.store, self.record, then=self.closed)

    def fail(self, error: str) -> None:
        """FAILED, with its error tag (and its params, as a FAILED run always has them)."""
        self.record.tags.update(content.error_tag(error))
        self.record.metrics = []
        self.set_terminated(self.record.run_id, status="FAILED")


def start_run(cl, exp_id: str, spec, parent_id: str | None = None, log_params: bool = True,
              start_time: int | None = None):
    """Create a run with the spec's identity tags (and params); returns its RunInfo.

    With log_params=False the params wait for `log_result`, which sends them with
    the curves in one request: for a run whose descent is already done (and started
    at `start_time`, ms since the epoch; None: now).
    """
    info = cl.create_run(exp_id, start_time=start_time, run_name=spec.run_name,
                         tags=content.identity_tags(spec, parent_id)).info
    if log_params:
        cl.log_batch(info.run_id, params=_params(spec))
    return info


@contextmanager
def terminating(cl, run_id: str, spec, end_time: int | None = None):
    """Close the run FINISHED, FAILED (its params and error kept) or KILLED (Ctrl-C).
    end_time: when a finished descent ended (ms since the epoch); None: now.

    A store that cannot be reached is not asked again (that would only repeat
    the client's retries): the error goes up with the run left as it was.
    """
    from mlflow.entities import RunTag

    try:
        yield
    except KeyboardInterrupt:
        cl.set_terminated(run_id, status="KILLED")
        raise
    except BaseException as exc:
        if unreachable(exc):
            raise
        # Logging the same param value twice is allowed: a run whose params went first keeps them.
        tags = [RunTag(k, v) for k, v in content.error_tag(f"{type(exc).__name__}: {exc}").items()]
        cl.log_batch(run_id, params=_params(spec), tags=tags)
        cl.set_terminated(run_id, status="FAILED", end_time=end_time)
        raise
    else:
        cl.set_terminated(run_id, status="FINISHED", end_time=end_time)


def log_result(cl, info, spec, result: Result, curve_points: int, log_params: bool = False,
               now: int | None = None) -> None:
    """Log a finished descent: curves, summary metrics, status tags (params too when
    asked), in one request, then the artifacts.

    now: the metrics' timestamp in ms (default: now); a run kept on disk after a
    failed attempt keeps the same one, so recording it again adds no duplicate points.
    """
    from mlflow.entities import Metric, RunTag

    metrics = [Metric(*m) for m in content.run_metrics(spec, result, curve_points, now)]
    tags = [RunTag(k, v) for k, v in content.status_tags(result).items()]
    cl.log_batch(info.run_id, metrics=metrics, tags=tags, params=_params(spec) if log_params else [])
    log_dataset(cl, info.run_id, spec)
    local = local_dir(info.artifact_uri)
    if local is not None:
        # A local store: write the files in place, skipping MLflow's copy.
        local.mkdir(parents=True, exist_ok=True)
        content.write_artifacts(local, spec, result)
    else:
        upload_files(cl, info.run_id, spec, result)


def upload_files(cl, run_id: str, spec, result: Result) -> None:
    """A run's files to a store whose artifacts are not local (s3://, ...)."""
    with tempfile.TemporaryDirectory(prefix="gdexp-") as tmp:
        content.write_artifacts(Path(tmp), spec, result)
        cl.log_artifacts(run_id, tmp)


def log_dataset(cl, run_id: str, spec) -> None:
    """The run's data set as an MLflow dataset input (the UI's Dataset column), if it has one."""
    found = content.dataset(spec)
    if found is None:
        return
    from mlflow.entities import Dataset, DatasetInput, InputTag

    tags = [InputTag(k, v) for k, v in content.DATASET_INPUT_TAGS.items()]
    cl.log_inputs(run_id, datasets=[DatasetInput(Dataset(**found), tags=tags)])


def log_datasets(store: Store, runs: list[tuple[str, object]]) -> None:
    """`log_dataset` for (run id, spec) pairs of `store`: below MLflow's API in one transaction
    where the fence allows (gdexp.tracking.fast.write.write_dataset_inputs), else one request a run."""
    found = [(run_id, spec, content.dataset(spec)) for run_id, spec in runs]
    found = [(run_id, spec, dataset) for run_id, spec, dataset in found if dataset is not None]
    if not found:
        return
    if store.fast:
        from gdexp.tracking.fast.fence import FastPathUnavailable
        from gdexp.tracking.fast.write import write_dataset_inputs
        from gdexp.tracking.writes import wait_unlocked

        inputs = [(run_id, store.experiment_id, dataset) for run_id, _, dataset in found]
        try:
            wait_unlocked(lambda: write_dataset_inputs(store.uri, inputs, content.DATASET_INPUT_TAGS), store.uri)
            return
        except FastPathUnavailable:
            pass
    for run_id, spec, _ in found:
        log_dataset(store.client, run_id, spec)


def attach_files(uri: str, run_id: str, files: list[Path], folder: str, artifact_uri: str | None = None) -> None:
    """Log files on a run (a sweep's parent: its report), as artifacts under `folder`/.

    Where the run's `artifact_uri` (run.info.artifact_uri) is a local folder, the files are
    copied there as MLflow's LocalArtifactRepository.log_artifact copies them (copy_files),
    without opening MLflow's client (~2 s); else (a server's artifacts, or not given) through it.
    """
    local = local_dir(artifact_uri) if artifact_uri else None
    if local is not None:
        copy_files(files, local / folder)
        return
    from gdexp.tracking.store import client

    cl = client(uri)
    for path in files:
        cl.log_artifact(run_id, str(path), artifact_path=folder)


def copy_files(files: list[Path], target: Path) -> None:
    """Copy files into a local artifact folder as MLflow's LocalArtifactRepository.log_artifact
    does: each into a hidden temporary file beside its place, its times and mode copied, then
    moved over it (a reader never sees half a file; an earlier file of that name is replaced)."""
    import os
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        fd, staged = tempfile.mkstemp(dir=target, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as source:
                shutil.copyfileobj(source, out)
            shutil.copystat(path, staged)
            os.replace(staged, target / path.name)
        except BaseException:
            Path(staged).unlink(missing_ok=True)
            raise


def _params(spec):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in content.params(spec.config).items()]


def _keep(store: Store, spec, result, descent, run_id, parent_id, exc, keep_dir: Path, now: int) -> dict:
    """Write the run to the keep folder; returns its row, status UNRECORDED."""
    from gdexp.tracking.pending import keep_run, short_reason

    error = None
    if result is None:
        try:
            result = descent()
        except Exception as failure:  # the run failed, and that is what will be recorded
            error = f"{type(failure).__name__}: {failure}"
    where = {"uri": store.uri, "experiment": store.experiment, "parent_id": parent_id}
    entry = keep_run(keep_dir, where, run_id, spec, result, error, spec.config["tracking"]["curve_points"], now)
    reason = short_reason(exc)
    log.warning(f"gdexp: run {spec.run_name} not recorded ({store.uri} does not answer from "
                f"{socket.gethostname()}: {reason}); kept in {entry}")
    row = content.run_row(spec, run_id, result, UNRECORDED, reason, parent_id)
    return {**row, "kept": str(entry), "uri": store.uri}
