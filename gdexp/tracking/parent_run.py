"""A sweep's parent run: opened once every job is known to be valid, closed with its summary."""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from gdexp.core.errors import ConfigError
from gdexp.results.summary import summarize
from gdexp.results.table import typed_table
from gdexp.tracking import TAG, env, guards
from gdexp.tracking.pending import keep_parent, kept, resume_message, short_reason
from gdexp.tracking.provenance import command, provenance
from gdexp.tracking.reader import load_runs
from gdexp.tracking.store import client, experiment_id, forget_stores, resolve_uri, unreachable, where_to_look

# On a parent run whose sweep left runs on disk (gdexp resume): how many.
UNRECORDED_TAG = f"{TAG}unrecorded"
_opened: list[tuple[str, str]] = []  # (parent run id, tracking URI) of the last sweep opened here (gdexp.sweep)


@dataclass(frozen=True)
class Sweep:
    """What a sweep's parent run needs to know, from the sweep's config.

    Attributes:
        uri: the configured tracking URI (tracking.uri; MLFLOW_TRACKING_URI wins).
        experiment: the MLflow experiment.
        name: the named sweep (``+sweep=NAME``) or ``multirun``.
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


@contextmanager
def sweep_run(sweep: Sweep, rows: Callable[[], list[dict]]):
    """Open the parent run of a multirun; yield its id; tabulate and close it.

    The store, the experiment and the parent are created here, in the
    launching process, before any job starts: jobs that start together on a
    fresh SQLite file would otherwise race on MLflow's schema migration. The
    parent id, the resolved tracking URI and the sweep folder reach the jobs
    through the environment (gdexp.tracking.env) and are removed at the end.
    Ctrl-C leaves the parent KILLED, a crash FAILED. If any job failed, the
    process exits non-zero after the summary.

    Before anything runs, the store is checked (gdexp.tracking.guards): a tracking
    server must answer, and a SQLite file must be on a local disk and on the
    machine the jobs run on. Runs the store did not take during the sweep
    (kept on disk, gdexp.tracking.pending) leave the parent open, tagged
    gdexp.unrecorded, and the process exits non-zero with the command that
    records them.

    Args:
        rows: the summary rows of the sweep's jobs so far (gdexp.tracking.content.run_row);
            called at the end to tabulate the sweep without reading it back from the store.
    """
    try:
        uri = resolve_uri(sweep.uri)
        guards.check_store_filesystem(uri)
        guards.check_store_for_launcher(uri, sweep.launcher)
        guards.check_reachable(uri)
    except ConfigError as exc:
        sys.exit(f"gdexp: error: {exc}")  # one line, exit 1, nothing run
    forget_stores()  # a store found down in an earlier sweep of this process is asked again
    folder = Path(sweep.folder).resolve()
    cl = client(uri)
    exp = experiment_id(cl, sweep.experiment)
    tags = {
        f"{TAG}sweep": "true",
        f"{TAG}sweep_name": sweep.name,
        f"{TAG}command": shlex.join(["gdexp", *command()])[:7000],
        f"{TAG}sweep_dir": str(folder),
        **{f"{TAG}{k}": v for k, v in provenance().items()},
    }
    parent_id = cl.create_run(exp, run_name=sweep.name, tags=tags).info.run_id
    _opened[:] = [(parent_id, uri)]
    values = {env.PARENT_RUN: parent_id, env.TRACKING_URI: uri, env.SWEEP_DIR: str(folder),
              env.START_DIR: os.getcwd()}
    with env.sweep_environment(values):
        try:
            yield parent_id
            left = len(kept(folder))
            if left:  # the parent stays open until `gdexp resume` has recorded them
                cl.set_tag(parent_id, UNRECORDED_TAG, str(left))
            else:
                counts = close(cl, parent_id, uri, typed_table(rows()), sweep.searched)
        except KeyboardInterrupt:
            cl.set_terminated(parent_id, status="KILLED")
            raise
        except BaseException as exc:
            if unreachable(exc):
                keep_parent(folder, uri, parent_id)
                sys.exit(resume_message(len(kept(folder)), None, uri, short_reason(exc), folder))
            cl.set_terminated(parent_id, status="FAILED")
            raise
    if left:
        sys.exit(resume_message(left, None, uri, "it did not answer during the sweep", folder))
    if counts["failed"]:
        sys.exit(f"gdexp: {int(counts['failed'])} of {int(counts['runs'])} runs failed "
                 "(their errors are above and on each run's gdexp.error tag)")


def last_sweep() -> tuple[str, str] | None:
    """(parent run id, tracking URI) of the last sweep this process opened, taken: None when no
    sweep was opened since the last call (for gdexp.sweep)."""
    return _opened.pop() if _opened else None


def close(cl, parent_id: str, uri: str, table: pd.DataFrame, searched: tuple[str, ...] = ()) -> dict:
    """Log the summary of the sweep's runs (gdexp.results.summary) on the parent, print it, close the parent."""
    from mlflow.entities import Metric

    summary = summarize(table, searched)
    counts = summary.metrics()
    cl.log_batch(parent_id, metrics=[Metric(k, v, 0, 0) for k, v in counts.items()])
    with tempfile.TemporaryDirectory(prefix="gdexp-") as tmp:
        for name, part in summary.tables().items():
            part.to_csv(Path(tmp) / name, index=False)
        cl.log_artifacts(parent_id, tmp)
    cl.set_terminated(parent_id, status="FAILED" if counts["failed"] else "FINISHED")
    print(summary.text())
    print(where_to_look(uri, cl.get_run(parent_id).info.experiment_id, parent_id))
    return counts


def close_if_open(cl, parent_id: str, uri: str) -> bool:
    """Close a parent left open (runs kept on disk, now recorded), from its runs in the store."""
    parent = cl.get_run(parent_id)
    if parent.info.status != "RUNNING" and UNRECORDED_TAG not in parent.data.tags:
        return False
    if UNRECORDED_TAG in parent.data.tags:
        cl.delete_tag(parent_id, UNRECORDED_TAG)
    close(cl, parent_id, uri, load_runs(sweep=parent_id, tracking_uri=uri))
    return True


def annotate(uri: str, run_id: str, metrics: dict[str, float] | None = None, params: dict | None = None,
             tags: dict[str, str] | None = None) -> None:
    """Results on a run of a sweep (its parent, or a child already closed), in one request."""
    from mlflow.entities import Metric, Param, RunTag

    client(uri).log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in (metrics or {}).items()],
                          params=[Param(k, str(v)) for k, v in (params or {}).items()],
                          tags=[RunTag(k, v) for k, v in (tags or {}).items()])


def mark_failed(uri: str, run_id: str) -> None:
    """Close a sweep's parent run FAILED (its search found no answer)."""
    client(uri).set_terminated(run_id, status="FAILED")
