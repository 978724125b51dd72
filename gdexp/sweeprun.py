"""A sweep's parent run: opened once every job is known to be valid, closed with its summary."""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

from gdexp import guards, tracking
from gdexp.core.errors import ConfigError
from gdexp.provenance import provenance
from gdexp.resume import SWEEP_DIR_ENV, resume_message, short_reason, spool_parent, spooled
from gdexp.summary import format_counts, format_table, sweep_counts, sweep_table


_command: list[str] | None = None

# On a parent run whose sweep left runs on disk (gdexp.resume): how many.
UNRECORDED_TAG = f"{tracking.TAG}unrecorded"


def remember_command(argv: list[str]) -> None:
    """The command line as the user typed it, for the parent's gdexp.command tag."""
    global _command
    _command = list(argv)


@contextmanager
def sweep_run(config: DictConfig, name: str, job_failures=lambda: 0):
    """Open the parent run of a multirun; yield its id; tabulate and close it.

    The store, the experiment and the parent are created here, in the
    launching process, before any job starts: jobs that start together on a
    fresh SQLite file would otherwise race on MLflow's schema migration. The
    parent id and the resolved tracking URI reach the jobs through the
    environment (inherited by worker processes) and are removed at the end.
    Ctrl-C leaves the parent KILLED, a crash FAILED. If any job failed, the
    process exits non-zero after the summary.

    Before anything runs, the store is checked (gdexp.guards): a tracking
    server must answer, and a SQLite file must be on a local disk and on the
    machine the jobs run on. Runs the store did not take during the sweep
    (kept on disk, gdexp.resume) leave the parent open, tagged
    gdexp.unrecorded, and the process exits non-zero with the command that
    records them.

    Args:
        job_failures: counts jobs that failed without an MLflow run to show it.
    """
    from gdexp.app import open_store

    try:
        uri = tracking.resolve_uri(config.tracking.uri)
        guards.check_store_filesystem(uri)
        guards.check_store_for_launcher(uri, config.hydra.get("launcher"))
        guards.check_reachable(uri)
    except ConfigError as exc:
        sys.exit(f"gdexp: error: {exc}")  # one line, exit 1, nothing run
    open_store.cache_clear()  # a store found down in an earlier sweep of this process is asked again
    sweep_dir = Path(config.hydra.sweep.dir).resolve()
    cl = tracking.client(uri)
    exp = tracking.experiment_id(cl, config.tracking.experiment)
    tags = {
        f"{tracking.TAG}sweep": "true",
        f"{tracking.TAG}sweep_name": name,
        f"{tracking.TAG}command": shlex.join(["gdexp", *(_command if _command is not None else sys.argv[1:])]),
        f"{tracking.TAG}sweep_dir": str(sweep_dir),
        **{f"{tracking.TAG}{k}": v for k, v in provenance().items()},
    }
    parent_id = cl.create_run(exp, run_name=name, tags=tags).info.run_id
    saved = {k: os.environ.get(k) for k in (tracking.PARENT_ENV, "MLFLOW_TRACKING_URI", SWEEP_DIR_ENV)}
    os.environ[tracking.PARENT_ENV] = parent_id
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ[SWEEP_DIR_ENV] = str(sweep_dir)
    try:
        yield parent_id
        kept = len(spooled(sweep_dir))
        if kept:  # the parent stays open until `gdexp resume` has recorded them
            cl.set_tag(parent_id, UNRECORDED_TAG, str(kept))
        else:
            counts = close_sweep(cl, parent_id, uri, extra_failed=job_failures())
    except KeyboardInterrupt:
        cl.set_terminated(parent_id, status="KILLED")
        raise
    except BaseException as exc:
        if tracking.unreachable(exc):
            spool_parent(sweep_dir, uri, parent_id)
            sys.exit(resume_message(len(spooled(sweep_dir)), None, uri, short_reason(exc), sweep_dir))
        cl.set_terminated(parent_id, status="FAILED")
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if kept:
        sys.exit(resume_message(kept, None, uri, "it did not answer during the sweep", sweep_dir))
    if counts["failed"]:
        sys.exit(f"gdexp: {int(counts['failed'])} of {int(counts['runs'])} runs failed "
                 "(their errors are above and on each run's gdexp.error tag)")


def close_sweep(cl, parent_id: str, uri: str, extra_failed: int = 0) -> dict:
    """Tabulate the children, log the summary on the parent, print it, close the parent."""
    from mlflow.entities import Metric

    exp = cl.get_run(parent_id).info.experiment_id
    table = sweep_table(cl, exp, parent_id)
    counts = sweep_counts(table)
    counts["failed"] += extra_failed
    counts["runs"] += extra_failed
    cl.log_batch(parent_id, metrics=[Metric(k, v, 0, 0) for k, v in counts.items()])
    with tempfile.TemporaryDirectory(prefix="gdexp-") as tmp:
        table.to_csv(Path(tmp) / "summary.csv", index=False)
        cl.log_artifacts(parent_id, tmp)
    cl.set_terminated(parent_id, status="FAILED" if counts["failed"] else "FINISHED")
    print(format_table(table) if len(table) else "(no runs)")
    print(format_counts(counts))
    print(where_to_look(uri, exp, parent_id))
    return counts


def where_to_look(uri: str, experiment_id: str, parent_id: str) -> str:
    if uri.startswith("sqlite:"):
        how = f"mlflow ui --backend-store-uri {uri} --port 5000"
        base = "http://127.0.0.1:5000"
    else:
        how, base = "(tracking server)", uri.rstrip("/")
    return (f"Runs are in {uri}, sweep {parent_id}.\n"
            f"Open the MLflow UI: {how}\n"
            f"  then {base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
