"""A sweep's parent run: opened once every job is known to be valid, closed with its summary
(or KILLED, with the line that says how to finish it)."""
from __future__ import annotations

import json
import logging
import os
import shlex
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from gdexp.results.summary import summarize
from gdexp.results.table import typed_table
from gdexp.tracking import TAG, env, guards, interrupts, plan, stale_sweeps
from gdexp.tracking.errors import RunsFailed, SweepInterrupted, Unrecorded
from gdexp.tracking.pending import keep_parent, kept, short_reason
from gdexp.tracking.provenance import command, provenance
from gdexp.tracking.reader import load_runs
from gdexp.tracking.writes import wait_writable
from gdexp.tracking.store import (Store, check_artifacts_writable, client, forget_stores, open_store,
                                  resolve_uri, search, unreachable, where_to_look)

# On a parent run whose sweep left runs on disk (gdexp resume): how many.
UNRECORDED_TAG = f"{TAG}unrecorded"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sweep:
    """What a sweep's parent run needs to know, from the sweep's config.

    Attributes:
        uri: the configured tracking URI (tracking.uri; MLFLOW_TRACKING_URI wins).
        experiment: the MLflow experiment.
        name: what defines the sweep (gdexp.hydra.sweepers.common.sweep_name):
            ``lr_grid optimizer=momentum``, ``optimizer.lr x seed``.
        folder: the sweep's folder (hydra.sweep.dir).
        launcher: the launcher's config as plain containers (the guards read its
            _target_ and, for Ray, its address), or None.
    """

    uri: str | None
    experiment: str
    name: str
    folder: Path
    launcher: dict | None = None
    searched: tuple[str, ...] = ()  # keys a search samples besides the lr: they never split the summary's groups
    named: str | None = None  # the named sweep (+sweep=NAME): its gdexp.sweep_name tag; else the tag is `name`
    name_keys: tuple[str, ...] = ()  # the keys its run names carry (for jobs run elsewhere: env.SWEPT)
    varied: tuple[str, ...] = ()     # the keys whose values differ between its runs (RunSpec.varied)


@contextmanager
def sweep_run(sweep: Sweep, rows: Callable[[], list[dict]], jobs: list[dict] | None = None,
              data: list[str] = (), curves: tuple[int, int, int] | None = None):
    """Open the parent run of a multirun; yield its id; tabulate and close it.

    The store, the experiment and the parent are created here, in the
    launching process, before any job starts: jobs that start together on a
    fresh SQLite file would otherwise race on MLflow's schema migration. The
    parent id, the resolved tracking URI and the sweep folder reach the jobs
    through the environment (gdexp.tracking.env) and are removed at the end.
    The sweep's plan (gdexp.tracking.plan) is written to its folder before
    any job starts. Ctrl-C or SIGTERM leaves the parent and every run still
    open KILLED and raises SweepInterrupted (how many runs were recorded, how to
    finish: `gdexp resume`); a crash leaves it FAILED. If any job failed,
    RunsFailed is raised after the summary.

    Before anything runs, the store is checked (gdexp.tracking.guards; a
    ConfigError when it cannot be used): a URI gdexp can record in, a
    tracking server that answers, a SQLite file on a local disk and on the
    machine the jobs run on, an artifact folder it can write. Runs the store
    did not take during the sweep (kept on disk, gdexp.tracking.pending) leave
    the parent KILLED, tagged gdexp.unrecorded (never RUNNING with no process behind it), and
    raise Unrecorded, which names the command that records them.

    A sweep that `gdexp resume` runs again (plan.resumed()) reopens its parent
    instead of making one, and is closed with one row per planned config.

    Args:
        rows: the summary rows of the sweep's jobs so far (gdexp.tracking.content.run_row);
            called at the end to tabulate the sweep without reading it back from the store.
        jobs: the grid's jobs for the plan (plan.job_entries); None for a search.
        data: the data checksums the jobs were validated with (pinned for a search's jobs).
        curves: (bytes, runs, largest stopping.maxiter) of the sweep's curve files, checked
            against the artifact folder's free space (gdexp.core.resources.check_disk).
    """
    uri = resolve_uri(sweep.uri)
    guards.check_store_uri(uri)
    guards.check_store_filesystem(uri)
    guards.check_store_for_launcher(uri, sweep.launcher)
    guards.check_reachable(uri)
    forget_stores()  # a store found down in an earlier sweep of this process is asked again
    # Found by SQL where the fence allows (MLflow's client opened only if asked), shared with the jobs of this process.
    store = open_store(uri, sweep.experiment)
    check_artifacts_writable(store.artifact_location, uri, curves)
    folder = Path(sweep.folder).resolve()
    again = plan.resumed()
    if again is None:
        stale_sweeps.close_dead_in(store)
        if jobs:
            stale_sweeps.say_unfinished_in(store, [job["config_hash"] for job in jobs])
        sweep_plan = plan.Plan(parent_id="", uri=uri, experiment=sweep.experiment, sweep_name=sweep.name,
                               argv=command(), start_dir=os.getcwd(), process=plan.this_process(),
                               jobs=jobs or [], planned=None if jobs is None else len(jobs), data=sorted(set(data)))
        sweep_plan = open_parent(store, sweep, folder, sweep_plan)
        fast = store.fast
    else:
        sweep_plan, fast = reopen(store.client, again[0]), False
    parent_id = sweep_plan.parent_id
    parent = ParentWriter(store, fast)
    plan.write_plan(folder, sweep_plan)
    values = {env.PARENT_RUN: parent_id, env.TRACKING_URI: uri, env.SWEEP_DIR: str(folder),
              env.START_DIR: os.getcwd(), env.SWEEP_PID: str(os.getpid()),
              env.SWEPT: json.dumps({"name_keys": list(sweep.name_keys), "varied": list(sweep.varied)})}
    with env.sweep_environment(values):
        try:
            yield parent_id
            left = len(kept(folder))
            if left:  # KILLED, tagged, until `gdexp resume` has recorded them (then it is closed with its summary)
                wait_writable(uri)
                store.client.set_tag(parent_id, UNRECORDED_TAG, str(left))
                close_running(store.client, parent_id)  # a kept run created before the store stopped: resume completes it
                parent.set_terminated(parent_id, status="KILLED")
            else:
                not_run(rows())
                if again is None:
                    table = typed_table(rows())
                else:  # the runs of both the sweep and its resumption
                    table = one_per_config(load_runs(sweep=parent_id, tracking_uri=uri))
                counts = close(parent, parent_id, uri, table, sweep.searched, table_shown=again is None)
        except SweepInterrupted:
            raise
        except KeyboardInterrupt as exc:
            raise interrupted(parent, sweep_plan, folder, exc) from None
        except BaseException as exc:
            if unreachable(exc):
                keep_parent(folder, uri, parent_id)
                raise Unrecorded(len(kept(folder)), uri, short_reason(exc), folder) from None
            parent.set_terminated(parent_id, status="FAILED")
            raise
    if left:
        raise Unrecorded(left, uri, "it did not answer during the sweep", folder)
    if counts["failed"]:
        raise RunsFailed(int(counts["failed"]), int(counts["runs"]),
                         failed_line(int(counts["failed"]), int(counts["runs"]), rows()))


def failed_line(failed: int, runs: int, rows: list[dict]) -> str:
    """The sweep's last line when jobs failed: where their errors are, for runs and for jobs that
    made no run (refused in a worker: joblib, Ray), which have no gdexp.error tag to point at.

    >>> failed_line(3, 8, [{"run_id": None, "error": "x"}, {"run_id": "ab", "error": "y"}])
    'gdexp: 3 of 8 runs failed (their errors are above; 1 job made no run, the others have a gdexp.error tag)'
    >>> failed_line(2, 8, [{"run_id": None, "error": "x"}, {"run_id": None, "error": "y"}])
    'gdexp: 2 of 8 runs failed (their errors are above; 2 jobs made no run)'
    """
    no_run = sum(row.get("run_id") is None and bool(row.get("error")) for row in rows)
    if not no_run:
        where = "their errors are above and on each run's gdexp.error tag"
    else:
        where = f"their errors are above; {no_run} job{'s' if no_run != 1 else ''} made no run"
        if no_run < failed:
            where += ", the others have a gdexp.error tag"
    return f"gdexp: {failed} of {runs} runs failed ({where})"


def open_parent(store: Store, sweep: Sweep, folder: Path, sweep_plan: plan.Plan) -> plan.Plan:
    """Create the sweep's parent run, tagged with its command, provenance and plan; the plan with its id.

    Where the store's experiment was found by SQL (store.fast), the run is written below MLflow's
    API (gdexp.tracking.fast), as MLflow's create_run writes it, and known open to the interrupt
    handler (gdexp.tracking.writes.note_open); otherwise created through MLflow's client."""
    tags = {
        f"{TAG}sweep": "true",
        f"{TAG}sweep_name": sweep.named or sweep.name,
        f"{TAG}command": shlex.join(["gdexp", *command()])[:7000],
        f"{TAG}sweep_dir": str(folder),
        **{f"{TAG}{k}": v for k, v in provenance().items()},
        **sweep_plan.tags(),
    }
    if not store.fast:
        run = store.client.create_run(store.experiment_id, run_name=sweep.name, tags=tags)
        return replace(sweep_plan, parent_id=run.info.run_id)
    from gdexp.tracking.fast.records import LIVE, RunRecord
    from gdexp.tracking.record import write_fast
    from gdexp.tracking.writes import note_open

    record = RunRecord(store.experiment_id, sweep.name, tags=tags, status=LIVE, start_time=int(time.time() * 1000))
    write_fast(store, record, then=lambda: note_open(record.run_id, ParentWriter(store, True)))
    return replace(sweep_plan, parent_id=record.run_id)


class ParentWriter:
    """Closes a sweep's parent run: below MLflow's API where it was written so (`fast`: its
    summary metrics, status and end time in one transaction, gdexp.tracking.fast.write.update_run),
    otherwise through MLflow's client (a resumed sweep, a server, another schema).

    Also the closer gdexp.tracking.writes.close_open_runs calls after an interrupt.
    """

    def __init__(self, store: Store, fast: bool | None):
        self.store, self.fast = store, bool(fast)

    @property
    def client(self):
        return self.store.client

    @property
    def experiment_id(self) -> str:
        return self.store.experiment_id

    def set_terminated(self, run_id: str, status: str = "FINISHED", metrics: dict[str, float] | None = None) -> None:
        """Close the run with `status`, logging `metrics` (key -> value, at step 0, timestamp 0) first."""
        from gdexp.tracking.writes import forget_open

        if not (self.fast and log_fast(self.store.uri, run_id, metrics=metrics, status=status)):
            if metrics:
                from mlflow.entities import Metric

                self.client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
            self.client.set_terminated(run_id, status=status)
        forget_open(run_id)

    def log_files(self, run_id: str, folder: Path) -> None:
        """The files of `folder` as the run's artifacts (a local artifact folder: copied there)."""
        from gdexp.tracking.fast.records import artifact_uri
        from gdexp.tracking.record import copy_files

        target = guards.local_dir(artifact_uri(self.store.artifact_location, run_id)) if self.fast else None
        if target is None:
            self.client.log_artifacts(run_id, str(folder))
            return
        copy_files(sorted(folder.iterdir()), target)


def reopen(cl, sweep_plan: plan.Plan) -> plan.Plan:
    """A parent run that `gdexp resume` continues: RUNNING again, its process this one."""
    from mlflow.entities import RunTag

    now = plan.with_process(sweep_plan)
    cl.update_run(now.parent_id, status="RUNNING")
    cl.log_batch(now.parent_id, tags=[RunTag(k, v) for k, v in now.tags().items()])
    if UNRECORDED_TAG in cl.get_run(now.parent_id).data.tags:
        cl.delete_tag(now.parent_id, UNRECORDED_TAG)
    return now


class ClientParent(ParentWriter):
    """A ParentWriter on an open MLflow client (`gdexp resume` closing a parent it found)."""

    def __init__(self, cl, experiment_id: str):
        self._client, self._experiment_id, self.fast = cl, experiment_id, False

    @property
    def client(self):
        return self._client

    @property
    def experiment_id(self) -> str:
        return self._experiment_id


def interrupted(parent: ParentWriter, sweep_plan: plan.Plan, folder: Path, exc: KeyboardInterrupt) -> SweepInterrupted:
    """Close a sweep stopped by Ctrl-C or SIGTERM: its open runs and parent KILLED; returns the error
    to raise (its line, and the exit status 128 + the signal)."""
    cl = parent.client
    with interrupts.deferred():  # a second Ctrl-C waits until the store is consistent
        close_running(cl, sweep_plan.parent_id)
        parent.set_terminated(sweep_plan.parent_id, status="KILLED")
        done = len(children(cl, sweep_plan.parent_id, "FINISHED"))
    of = f" of {sweep_plan.planned}" if sweep_plan.planned is not None else ""
    finish = (f"to finish: gdexp resume {folder}" if sweep_plan.planned is not None
              else "a search cannot be continued: run it again")
    return SweepInterrupted(f"gdexp: interrupted: {done}{of} runs recorded; {finish}", interrupts.exit_status(exc))


def children(cl, parent_id: str, status: str | None = None) -> list:
    """The runs of a sweep (those with `status` only, when given)."""
    where = f"tags.mlflow.parentRunId = '{parent_id}'" + (f" and attributes.status = '{status}'" if status else "")
    return search(cl, [cl.get_run(parent_id).info.experiment_id], where)


def close_running(cl, parent_id: str) -> int:
    """Close the runs of a sweep still RUNNING as KILLED; returns how many."""
    running = children(cl, parent_id, "RUNNING")
    for run in running:
        cl.set_terminated(run.info.run_id, status="KILLED")
    return len(running)


def one_per_config(table: pd.DataFrame) -> pd.DataFrame:
    """One row per config hash: its FINISHED run, else its latest (a sweep resumed after a crash).

    >>> t = pd.DataFrame({"config_hash": ["a", "a", "b"], "mlflow_status": ["KILLED", "FINISHED", "FAILED"],
    ...                   "start_time": [2, 1, 3]})
    >>> one_per_config(t)["mlflow_status"].tolist()
    ['FINISHED', 'FAILED']
    """
    key = table["config_hash"].fillna(table.get("run_id", pd.Series(dtype=str)))
    order = table.assign(_key=key, _unfinished=table["mlflow_status"] != "FINISHED")
    order = order.sort_values(["_unfinished", "start_time"], ascending=[True, False], kind="stable")
    return table.loc[sorted(order.drop_duplicates("_key").index)].reset_index(drop=True)


def not_run(rows: list[dict]) -> None:
    """Say, one line each, the jobs that failed before any run existed (no MLflow run shows them)."""
    for row in rows:
        if row.get("run_id") is None and row.get("error"):
            log.error(f"gdexp: job not run: {row['run_name']}: {row['error']}")


def close(parent: ParentWriter, parent_id: str, uri: str, table: pd.DataFrame, searched: tuple[str, ...] = (),
          table_shown: bool = True) -> dict:
    """Log the summary of the sweep's runs (gdexp.results.summary) on the parent, say it, close the parent.

    table_shown: print the table of runs; False (a sweep `gdexp resume` finished) prints the
    counts and answers only: the table was printed by the sweep (`gdexp report` shows it again).
    """
    summary = summarize(table, searched)
    counts = summary.metrics()
    with tempfile.TemporaryDirectory(prefix="gdexp-") as tmp:
        for name, part in summary.tables().items():
            part.to_csv(Path(tmp) / name, index=False)
        parent.log_files(parent_id, Path(tmp))
    parent.set_terminated(parent_id, status="FAILED" if counts["failed"] else "FINISHED", metrics=counts)
    log.info(summary.text() if table_shown else "\n".join(summary.answer_lines()))
    log.info(where_to_look(uri, parent.experiment_id, parent_id))
    return counts


def close_if_open(cl, parent_id: str, uri: str) -> bool:
    """Close a parent left open (runs kept on disk, now recorded) or KILLED (every planned run
    recorded since), from its runs in the store (one per config), through MLflow's client."""
    parent = cl.get_run(parent_id)
    if parent.info.status not in ("RUNNING", "KILLED") and UNRECORDED_TAG not in parent.data.tags:
        return False
    if UNRECORDED_TAG in parent.data.tags:
        cl.delete_tag(parent_id, UNRECORDED_TAG)
    table = one_per_config(load_runs(sweep=parent_id, tracking_uri=uri))
    close(ClientParent(cl, parent.info.experiment_id), parent_id, uri, table, table_shown=False)
    return True


def log_fast(uri: str, run_id: str, **changes) -> bool:
    """gdexp.tracking.fast.write.update_run(uri, run_id, **changes) where the fence allows it, whole
    (interrupts held until it ends), a locked store waited for; metrics given as {key: value}
    (at step 0, timestamp 0). False where it wrote nothing (no fast path, or MLflow's client must
    answer: a run not there, a param logged with another value)."""
    from gdexp.tracking.fast.fence import FastPathUnavailable
    from gdexp.tracking.fast.write import update_run
    from gdexp.tracking.writes import wait_unlocked

    changes["metrics"] = [(k, float(v), 0, 0) for k, v in (changes.get("metrics") or {}).items()]

    def write():
        with interrupts.deferred():
            return update_run(uri, run_id, **changes)

    try:
        return wait_unlocked(write, uri)
    except FastPathUnavailable:  # update_run asks the fence first, and writes nothing then
        return False


def annotate(uri: str, run_id: str, metrics: dict[str, float] | None = None, params: dict | None = None,
             tags: dict[str, str] | None = None) -> None:
    """Results on a run of a sweep (its parent, or a child already closed), in one request (one
    transaction below MLflow's API where the fence allows it)."""
    if log_fast(uri, run_id, metrics=metrics, params=params, tags=tags):
        return
    from mlflow.entities import Metric, Param, RunTag

    client(uri).log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in (metrics or {}).items()],
                          params=[Param(k, str(v)) for k, v in (params or {}).items()],
                          tags=[RunTag(k, v) for k, v in (tags or {}).items()])


def mark_failed(uri: str, run_id: str) -> None:
    """Close a sweep's parent run FAILED (its search found no answer)."""
    if not log_fast(uri, run_id, status="FAILED"):
        client(uri).set_terminated(run_id, status="FAILED")
