"""`gdexp resume FOLDER`: finish what a sweep (or a run) left undone.

In order: record the runs kept on disk while the store did not answer
(gdexp.tracking.pending); then, for a sweep with a plan (gdexp.tracking.plan),
close the runs its dead process left RUNNING (KILLED), run again, through the
sweep's own sweeper and launcher, only the planned configs without a FINISHED
run, and close the parent. Afterwards each planned config has exactly one
FINISHED run (a run it replaced, KILLED or FAILED, is deleted from the
sweep, tagged gdexp.superseded_by, restorable with `mlflow runs restore`), and
none is RUNNING. Safe to run twice: the second time there is nothing to do.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gdexp.commands.exits import Parser, say_invalid
from gdexp.core.errors import ConfigError, NotFound
from gdexp.tracking import env, parent_run, plan
from gdexp.tracking.guards import check_existing_store
from gdexp.tracking.uris import sqlite_path
from gdexp.tracking.pending import DONE, SPOOL, kept, replay, short_reason
from gdexp.tracking.store import client, find_run, read_client, unreachable

_HASH = "gdexp.config_hash"


@dataclass
class Progress:
    """What resume found and did.

    Attributes:
        recorded: runs kept on disk, now recorded.
        closed: parent run ids closed.
        stale: runs a dead sweep left RUNNING, closed KILLED.
        to_go: planned configs without a FINISHED run (to run again).
        finished: the planned config hashes that have a FINISHED run.
        plan: the sweep's plan, if it has one.
    """

    recorded: int = 0
    closed: list[str] = field(default_factory=list)
    stale: int = 0
    to_go: int = 0
    finished: frozenset[str] = frozenset()
    plan: plan.Plan | None = None


def resume(folder: Path, tracking_uri: str | None = None, force: bool = False) -> Progress:
    """Record every kept run under `folder`, close what the sweep left open, and say what is left to run.

    A recorded entry moves to gdexp-recorded/, so resuming twice records nothing twice.

    Raises:
        ConfigError: the sweep's process still runs (or ran on another host and `force` is off).
    """
    folder = Path(folder)
    check_resumable(folder, tracking_uri)
    done = Progress(recorded=len(kept(folder)))
    parents: dict[str, str] = {}
    for path in kept(folder):
        record = json.loads(path.read_text())
        uri = tracking_uri or record["uri"]
        replay(client(uri), record, path.parent / "artifacts")
        if record.get("parent_id"):
            parents[record["parent_id"]] = uri
        moved = path.parent.parent.parent / DONE / path.parent.name
        moved.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path.parent), moved)
    for note in sorted(folder.glob(f"**/{SPOOL}/parent.json")):
        record = json.loads(note.read_text())
        parents[record["parent_id"]] = tracking_uri or record["uri"]
        note.unlink()
    sweep_plan = plan.read_plan(folder)
    if sweep_plan is not None and sweep_plan.planned is not None:
        cl = client(tracking_uri or sweep_plan.uri)
        _check_gone(cl, sweep_plan, force)
        done.plan, done.stale = sweep_plan, parent_run.close_running(cl, sweep_plan.parent_id)
        runs = parent_run.children(cl, sweep_plan.parent_id, "FINISHED")
        done.finished = frozenset(r.data.tags.get(_HASH) for r in runs) & frozenset(sweep_plan.hashes())
        done.to_go = sum(h not in done.finished for h in sweep_plan.hashes())
        if done.to_go:
            parents.pop(sweep_plan.parent_id, None)  # the sweep run again closes it
        else:
            parents[sweep_plan.parent_id] = tracking_uri or sweep_plan.uri
    done.closed = [pid for pid, uri in parents.items() if parent_run.close_if_open(client(uri), pid, uri)]
    return done


def check_resumable(folder: Path, tracking_uri: str | None = None) -> None:
    """Refuse (ConfigError, one line, before anything is recorded or created) a folder that is no
    sweep's or run's (neither a plan nor kept runs), a store named by --tracking-uri that is not
    there (MLflow would create it, empty), and a planned sweep whose parent run is not in its store.

    A store that does not answer is not refused here: its runs stay kept, `resume` says so (exit 1).
    """
    if not folder.is_dir():
        raise ConfigError("folder", str(folder), "no such folder; name the sweep folder "
                          "(hydra.sweep.dir) or run folder the sweep's message named")
    sweep_plan = plan.read_plan(folder)
    if sweep_plan is None and not any(folder.glob(f"**/{SPOOL}")):
        raise ConfigError("folder", str(folder), f"not a sweep folder: no {plan.PLAN} and no {SPOOL}/ "
                          "(runs kept on disk) in it")
    if tracking_uri:
        check_existing_store(tracking_uri)
    if sweep_plan is not None and sweep_plan.planned is not None:
        uri = tracking_uri or sweep_plan.uri
        check_existing_store(uri)
        try:
            # A SQLite store is only read here (no lock file made beside it); a server is asked as is.
            find_run(read_client(uri) if sqlite_path(uri) else client(uri), sweep_plan.parent_id, "sweep")
        except NotFound:
            raise ConfigError("tracking.uri", uri, f"this sweep's parent run {sweep_plan.parent_id} is not "
                              "in this store; name the store the sweep recorded into") from None
        except Exception as exc:
            if unreachable(exc):
                return  # the store does not answer: resume keeps the runs and says so
            raise


def run_again(folder: Path, progress: Progress, tracking_uri: str | None = None) -> int:
    """Run the sweep's command again in this process, its parent reopened, its FINISHED configs
    skipped (gdexp.hydra.sweepers.grid); returns its exit status."""
    from gdexp.commands.main import run_hydra

    sweep_plan = progress.plan
    argv = [a for a in sweep_plan.argv if not a.lstrip("+").startswith("hydra.sweep.dir=")]
    argv.append(f"hydra.sweep.dir='{Path(folder).resolve()}'")
    with _started_as(sweep_plan, tracking_uri), plan.resuming(sweep_plan, progress.finished):
        try:
            run_hydra(argv)
        except SystemExit as exc:
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
                return 1
            return exc.code or 0
    return 0


def supersede(uri: str, sweep_plan: plan.Plan) -> int:
    """Delete from the sweep the runs a FINISHED run of the same config replaced (KILLED, FAILED),
    tagged gdexp.superseded_by; returns how many."""
    cl = client(uri)
    runs = parent_run.children(cl, sweep_plan.parent_id)
    finished = {r.data.tags.get(_HASH): r.info.run_id for r in runs if r.info.status == "FINISHED"}
    gone = [r for r in runs if r.info.status != "FINISHED" and r.data.tags.get(_HASH) in finished]
    for run in gone:
        cl.set_tag(run.info.run_id, "gdexp.superseded_by", finished[run.data.tags[_HASH]])
        cl.delete_run(run.info.run_id)
    return len(gone)


def main(argv: list[str]) -> int:
    """`gdexp resume FOLDER`: record the runs kept there, run the configs still to go; exit 0 once done."""
    args = _parser().parse_args(argv)
    folder = Path(args.folder)
    tracking_uri = args.tracking_uri
    try:
        progress = resume(folder, tracking_uri, args.force)
    except ConfigError as exc:
        return say_invalid(exc)
    except Exception as exc:
        if not unreachable(exc):
            raise
        left = len(kept(folder))
        print(f"gdexp resume: the store still does not answer ({short_reason(exc)}); {left} runs are "
              f"still kept under {folder}. Run the same command again later.", file=sys.stderr)
        return 1
    print(f"gdexp resume: recorded {progress.recorded} runs from {folder}"
          + (f"; closed sweep {', '.join(progress.closed)}" if progress.closed else ""))
    sweep_plan = progress.plan
    if sweep_plan is None:
        return 0
    stale = f", {progress.stale} stale run{'s' if progress.stale != 1 else ''} closed"
    print(f"gdexp resume: sweep {sweep_plan.parent_id}: {progress.to_go} to go{stale} "
          f"({sweep_plan.planned - progress.to_go} of {sweep_plan.planned} planned runs FINISHED)")
    status = run_again(folder, progress, tracking_uri) if progress.to_go else 0
    superseded = supersede(tracking_uri or sweep_plan.uri, sweep_plan)
    if superseded:
        print(f"gdexp resume: {superseded} run{'s' if superseded != 1 else ''} replaced by a FINISHED run of the "
              "same config deleted from the sweep (tagged gdexp.superseded_by; `mlflow runs restore` brings one back)")
    return status


def _check_gone(cl, sweep_plan: plan.Plan, force: bool) -> None:
    """Refuse to touch a sweep whose process may still be running it."""
    if cl.get_run(sweep_plan.parent_id).info.status != "RUNNING" or force:
        return
    process = sweep_plan.process
    if process.get("pid") == os.getpid() and plan.process_state(process) == "alive":
        return  # this very process ran it (in-process, as gdexp.sweep does) and is done with it
    state = plan.process_state(process)
    if state == "alive":
        raise ConfigError("sweep", sweep_plan.parent_id, f"its process (pid {process['pid']}) is still running; "
                          "let it finish or stop it (Ctrl-C, kill), then resume")
    if state == "elsewhere":
        raise ConfigError("sweep", sweep_plan.parent_id, f"it ran on host {process['host']}, from which this one "
                          "cannot tell whether it still runs; resume there, or pass --force once it is gone")


@contextmanager
def _started_as(sweep_plan: plan.Plan, tracking_uri: str | None):
    """The sweep's start folder and store, for the block (relative paths in its config are from there)."""
    saved_dir = os.getcwd()
    os.chdir(sweep_plan.start_dir)
    try:
        with env.sweep_environment({env.TRACKING_URI: tracking_uri or sweep_plan.uri}):
            yield
    finally:
        os.chdir(saved_dir)


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="gdexp resume",
        description="Finish a sweep that was interrupted (Ctrl-C, SIGTERM, kill -9, a lost machine) "
                    "or whose store did not answer: record the runs kept on disk, close the runs its "
                    "dead process left RUNNING (KILLED), run only the planned configs without a "
                    "FINISHED run, and close the sweep's parent run. Safe to run twice.",
        epilog="example:\n  gdexp resume multirun/2026-01-01/12-00-00",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="the sweep folder (hydra.sweep.dir) or run folder the message named")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="record into this store instead of the one the runs were meant for "
                        "(the parent run ids must exist there)")
    p.add_argument("--force", action="store_true",
                   help="resume a sweep started on another host whose process this host cannot see")
    return p
