"""A chunk of finished runs recorded at once: through the fast path (gdexp.tracking.fast) where the
store allows it, else one run at a time through MLflow's client (gdexp.tracking.record).

Both ways write the same content (gdexp.tracking.content) and return the same rows. The fast
path writes every run of the chunk in one transaction, after their artifact files: a process
killed half-way leaves none of the chunk's runs in the store (never one RUNNING or without its
files), and `gdexp resume` runs them again. (A batch that descends long enough to be written
live, gdexp.tracking.live, has its runs RUNNING until then: a kill -9 leaves those RUNNING,
and `gdexp resume` closes them KILLED before it runs their configs again.) A store that stops
answering (a server down, a full disk, a lock another process holds past gdexp's wait,
GDEXP_LOCK_WAIT_S) is not a failure of the runs: they are kept on disk for `gdexp resume`
(gdexp.tracking.pending), as the client path does, and the artifact folders written for them
are removed (no folder in mlartifacts/ without its run).
"""
from __future__ import annotations

import logging
import shutil
import socket
import time
from pathlib import Path

from gdexp.core.outcomes import FAILED, UNRECORDED
from gdexp.tracking import content, interrupts
from gdexp.tracking.guards import local_dir
from gdexp.tracking.pending import SPOOL, keep_run, short_reason
from gdexp.tracking.record import log_datasets, upload_files, write_run
from gdexp.tracking.store import Store, unreachable
from gdexp.tracking.writes import wait_unlocked

log = logging.getLogger(__name__)


def write_chunk(store: Store, specs: list, outcomes: list, *, parent_id: str | None, keep_dir: Path,
                timings: list | None = None) -> list[dict]:
    """Record finished descents; returns each run's row (gdexp.tracking.content.run_row), in order.

    Args:
        store: where the runs go.
        specs: the runs (RunSpecs).
        outcomes: each run's Result, or the exception its descent raised (the run is then
            FAILED with its params and error, as in gdexp.tracking.record.terminating).
        parent_id: the sweep's parent run.
        keep_dir: where runs the store does not take are kept (gdexp-unrecorded/).
        timings: each run's gdexp.tracking.live.Timing (its descent's start and end, the live
            run it was written as while it descended, written over here); None: now and now.
    """
    try:
        if store.down is not None:
            raise store.down  # found down by an earlier chunk: this process stops asking it
        fast = _fast(store)
    except Exception as exc:
        if not unreachable(exc):
            raise
        return _keep_all(store, specs, outcomes, parent_id, exc, keep_dir, int(time.time() * 1000))
    if not fast:
        return [write_run(store, spec, lambda o=outcome: _unwrap(o), parent_id=parent_id, keep_dir=keep_dir,
                          swallow=True, done=True, times=(t.start, t.end) if t else None)
                for spec, outcome, t in zip(specs, outcomes, timings or [None] * len(specs))]
    from gdexp.tracking.fast.records import RunRecord, artifact_uri
    from gdexp.tracking.fast.write import write_runs

    now = int(time.time() * 1000)
    curve_points = [spec.config["tracking"]["curve_points"] for spec in specs]
    records = [RunRecord(store.experiment_id, spec.run_name, **_record(spec, outcome, parent_id, points, now),
                         start_time=t.start if t else now, end_time=t.end if t else now)
               for spec, outcome, points, t in zip(specs, outcomes, curve_points, timings or [None] * len(specs))]
    live = [t.run_id for t in timings or [] if t.run_id]
    for record, t in zip(records, timings or []):
        if t.run_id:
            record.run_id = t.run_id
    remote, failed, written = [], {}, []
    for i, (record, spec, outcome) in enumerate(zip(records, specs, outcomes)):
        if isinstance(outcome, BaseException):
            continue
        folder = local_dir(artifact_uri(store.artifact_location, record.run_id))
        if folder is None:
            remote.append((record, spec, outcome))
            continue
        try:  # first the files, then the rows: a crash between leaves no run without its files
            folder.parent.mkdir(parents=True, exist_ok=True)  # <run id>/, then artifacts/ in it: two
            written.append(folder.parent)
            folder.mkdir(exist_ok=True)                       # calls, not mkdir(parents=True)'s three
            content.write_artifacts(folder, spec, outcome)
        except Exception as exc:  # this run is FAILED with what it has; the others go on
            failed[i] = f"{type(exc).__name__}: {exc}"
            record.status = "FAILED"
            record.tags.update(content.error_tag(failed[i]))

    def write():
        with interrupts.deferred():  # Ctrl-C or SIGTERM lands after the chunk's transaction, not inside it
            write_runs(store.uri, records, replace=bool(live))

    try:
        wait_unlocked(write, store.uri)  # the transaction rolled back: tried again while another process holds the lock
    except BaseException as exc:
        for folder in written:  # the rows are not there: their files would belong to no run
            shutil.rmtree(folder, ignore_errors=True)
        if not (isinstance(exc, Exception) and unreachable(exc)):
            raise
        return _keep_all(store, specs, outcomes, parent_id, exc, keep_dir, now)
    for record, spec, outcome in remote:
        upload_files(store.client, record.run_id, spec, outcome)
    log_datasets(store, [(record.run_id, spec) for record, spec in zip(records, specs)])
    rows = []
    for i, (record, spec, outcome) in enumerate(zip(records, specs, outcomes)):
        if isinstance(outcome, BaseException) or i in failed:
            error = failed.get(i) or f"{type(outcome).__name__}: {outcome}"
            log.error(f"gdexp: run {spec.run_name} ({record.run_id}) FAILED: {error}")
            result = None if isinstance(outcome, BaseException) else outcome
            rows.append(content.run_row(spec, record.run_id, result, FAILED, error, parent_id))
        else:
            rows.append(content.run_row(spec, record.run_id, outcome, parent_id=parent_id))
    return rows


def _record(spec, outcome, parent_id: str | None, curve_points: int, now: int) -> dict:
    """A run's tags, params, metrics and status for a RunRecord."""
    tags = content.identity_tags(spec, parent_id)
    if isinstance(outcome, BaseException):
        tags.update(content.error_tag(f"{type(outcome).__name__}: {outcome}"))
        return {"tags": tags, "params": content.params(spec.config), "metrics": [], "status": "FAILED"}
    tags.update(content.status_tags(outcome))
    return {"tags": tags, "params": content.params(spec.config), "status": "FINISHED",
            "metrics": content.run_metrics(spec, outcome, curve_points, now)}


def _fast(store: Store) -> bool:
    """Whether the fast path may write to this store (decided once per store; the reason it may
    not is printed once, unless the store is a server, where the client is the way)."""
    if store.fast is None:
        from gdexp.tracking.fast.fence import fast_path_available

        ok, why = wait_unlocked(lambda: fast_path_available(store.uri), store.uri)
        if not ok and not store.uri.startswith(("http://", "https://")):
            log.warning(f"gdexp: writing runs through MLflow's client, one at a time: {why}")
        store.fast = ok
    return store.fast


def _keep_all(store: Store, specs: list, outcomes: list, parent_id, exc, keep_dir: Path, now: int) -> list[dict]:
    """The chunk's runs kept on disk for `gdexp resume`; their rows, status UNRECORDED. One line
    says so when the store is first found down (the sweep's end counts them all)."""
    if store.down is None:
        log.warning(f"gdexp: {store.uri} did not take runs on {socket.gethostname()} ({short_reason(exc)}); "
              f"this sweep's runs from here on are kept in {Path(keep_dir) / SPOOL}/ for gdexp resume")
    store.down = exc
    return [_keep(store, spec, outcome, parent_id, exc, keep_dir, now) for spec, outcome in zip(specs, outcomes)]


def _keep(store: Store, spec, outcome, parent_id, exc, keep_dir: Path, now: int) -> dict:
    """The run kept on disk for `gdexp resume`; its row, status UNRECORDED."""
    result = None if isinstance(outcome, BaseException) else outcome
    error = None if result is not None else f"{type(outcome).__name__}: {outcome}"
    where = {"uri": store.uri, "experiment": store.experiment, "parent_id": parent_id}
    entry = keep_run(keep_dir, where, None, spec, result, error, spec.config["tracking"]["curve_points"], now)
    reason = short_reason(exc)
    return {**content.run_row(spec, None, result, UNRECORDED, reason, parent_id), "kept": str(entry), "uri": store.uri}


def _unwrap(outcome):
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
