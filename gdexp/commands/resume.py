"""`gdexp resume FOLDER`: record the runs a sweep (or a run) kept on disk, then close its parent run."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from gdexp.tracking import parent_run
from gdexp.tracking.pending import DONE, SPOOL, kept, replay, short_reason
from gdexp.tracking.store import client, unreachable


def resume(folder: Path, tracking_uri: str | None = None) -> tuple[int, list[str]]:
    """Record every kept run under `folder`, then close their sweeps' parents.

    A recorded entry moves to gdexp-recorded/, so resuming twice records nothing twice.

    Returns:
        (runs recorded, parent run ids closed).
    """
    folder = Path(folder)
    runs = kept(folder)
    parents: dict[str, str] = {}
    for path in runs:
        record = json.loads(path.read_text())
        uri = tracking_uri or record["uri"]
        replay(client(uri), record, path.parent / "artifacts")
        if record.get("parent_id"):
            parents[record["parent_id"]] = uri
        done = path.parent.parent.parent / DONE / path.parent.name
        done.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path.parent), done)
    for note in sorted(folder.glob(f"**/{SPOOL}/parent.json")):
        record = json.loads(note.read_text())
        parents[record["parent_id"]] = tracking_uri or record["uri"]
        note.unlink()
    closed = [pid for pid, uri in parents.items() if parent_run.close_if_open(client(uri), pid, uri)]
    return len(runs), closed


def main(argv: list[str]) -> int:
    """`gdexp resume FOLDER`: record the runs kept there; exit 0 once none is left."""
    args = _parser().parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"gdexp resume: error: no folder {folder}", file=sys.stderr)
        return 2
    try:
        count, closed = resume(folder, args.tracking_uri)
    except Exception as exc:
        if not unreachable(exc):
            raise
        left = len(kept(folder))
        print(f"gdexp resume: the store still does not answer ({short_reason(exc)}); {left} runs are "
              f"still kept under {folder}. Run the same command again later.", file=sys.stderr)
        return 1
    print(f"gdexp resume: recorded {count} runs from {folder}"
          + (f"; closed sweep {', '.join(closed)}" if closed else ""))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gdexp resume",
        description="Record the runs a sweep (or a run) kept on disk because the tracking store "
                    "did not answer, then close the sweep's parent run. Safe to run twice.",
        epilog="example:\n  gdexp resume multirun/2026-01-01/12-00-00",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="the sweep folder (hydra.sweep.dir) or run folder the message named")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="record into this store instead of the one the runs were meant for "
                        "(the parent run ids must exist there)")
    return p
