"""`gdexp report`: a sweep read back from MLflow, written as report.html and report.md."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

__all__ = ["main"]

_DESCRIPTION = """\
Read runs back from MLflow and write a report folder:
  report.html  one self-contained file (figures embedded; opens offline)
  report.md    the same text, with the figures as PNG/GIF files beside it
It holds a table of the runs (sorted by loss, then learning rate), the loss
curves at every step, final loss against learning rate with the closed-form
bounds lr_max_stable and lr_optimal where the loss has them, for 2-D losses the
descent paths on the loss contours and animations of the best run and of the
smallest learning rate that diverged, the provenance of the runs, and the
commands that reproduce them. Building twice from the same store gives the
same bytes. When the runs belong to one sweep, the folder is also attached to
its parent run as the artifact folder report/ (MLflow UI: open the parent run,
Artifacts, report/report.html)."""

_EPILOG = """\
examples:
  gdexp report                                   the latest sweep in ./mlflow.db
  gdexp report --sweep 7ab3ae1e83b346d38b263dd5b4ffdfd3 --out /tmp/lr-report
  gdexp report --experiment gdexp --tracking-uri sqlite:///runs/mlflow.db"""


def main(argv: list[str]) -> int:
    """Parse `gdexp report` arguments, build the report, attach it; returns the exit status."""
    args = _parser().parse_args(argv)
    from mlflow.exceptions import MlflowException

    from gdexp.report.build import build_report
    from gdexp.report.select import select

    try:
        sel = select(args.experiment, args.sweep, args.tracking_uri)
    except (LookupError, MlflowException) as exc:
        print(f"gdexp report: error: {_message(exc)}", file=sys.stderr)
        return 2
    if sel.runs.empty:
        print(f"gdexp report: error: no runs in {sel.by} {sel.key} ({sel.uri})", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("reports") / re.sub(r"[^A-Za-z0-9_.-]+", "_", sel.name)
    files = build_report(sel, out)
    print(f"Report of {sel.by} {sel.name} ({len(sel.runs)} runs) in {out}/: report.html, report.md, "
          f"{len(files) - 2} figure files")
    print(_attach(sel, files))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gdexp report", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--experiment", metavar="NAME",
                       help="every run of this MLflow experiment (sweep parent runs left out)")
    which.add_argument("--sweep", metavar="PARENT_RUN_ID",
                       help="the runs of one sweep, by its parent run id (printed at the end of "
                            "every sweep). Default, without --experiment: the latest sweep")
    p.add_argument("--out", metavar="DIR",
                   help="report folder (default: reports/<sweep or experiment name>/); figure files "
                        "of an earlier report there (fig-*.png, anim-*.gif) are replaced")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow store (default: sqlite:///./mlflow.db); MLFLOW_TRACKING_URI, when "
                        "set, wins, as for every gdexp command")
    return p


def _attach(sel, files: list[Path]) -> str:
    """Log the report files on the sweep's parent run, under report/."""
    if sel.parent_id is None:
        why = ("they belong to no sweep" if not sel.parents
               else "they do not all belong to one sweep")
        return f"Not attached to any MLflow run: {why}."
    from gdexp.tracking.store import client

    cl = client(sel.uri)
    for path in files:
        cl.log_artifact(sel.parent_id, str(path), artifact_path="report")
    return (f"Attached to parent run {sel.parent_id} as artifacts report/ "
            "(MLflow UI: open that run, Artifacts, report/report.html).")


def _message(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip("'\"")

