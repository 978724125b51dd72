"""`gdexp report` and `gdexp compare`: a sweep (or several) read back from MLflow, written as
report.html and report.md (gdexp.report builds them)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gdexp.report import UI_URL
from gdexp.tracking.record import attach_files
from gdexp.commands.exits import Parser

_DESCRIPTION = """\
Read runs back from MLflow and write a report folder:
  report.html  one self-contained file: interactive figures (plotly, inlined;
               opens offline), hover a point for its run, click it to open
               the run in the MLflow UI
  report.md    the same text, with the figures as PNG/GIF files beside it
It opens with each group's best_lr and max_stable_lr (groups: the runs split by
every swept key except the learning rate and the seed), then one figure that
answers the sweep: final loss (or a validation metric) against learning rate,
a colour per group, diverged runs in a band above it with the step they
diverged at, the closed-form bounds lr_max_stable and lr_optimal where the loss
has them, mean and min-max band over seeds. Then what a search sweep searched
(lr_find's probes, Optuna's history, parallel coordinates and parameter
importances), the loss curves at every step, for 2-D losses the descent paths
on the loss contours and animations of the best run and of the smallest
learning rate that diverged, the runs table, the provenance of the runs, and
the commands that reproduce them. Building twice from the same store gives
the same bytes. When the runs belong to one sweep, the folder is also attached
to its parent run as the artifact folder report/ (MLflow UI: open the parent
run, Artifacts, report/report.html). A stored config naming code outside
gdexp (your own loss) is never imported unless you pass --allow-module for
its module."""

_EPILOG = """\
examples:
  gdexp report                                   the latest sweep in ./mlflow.db
  gdexp report --sweep 7ab3ae1e83b346d38b263dd5b4ffdfd3 --out /tmp/lr-report
  gdexp report --sweep A --sweep B               two sweeps compared in one report
  gdexp report --experiment gdexp --tracking-uri sqlite:///runs/mlflow.db
  gdexp report --ui-url http://mlflow.example.org:8080"""

_COMPARE_DESCRIPTION = """\
Compare sweeps in one report: the overlay figure with every sweep's groups
(labelled by sweep), a table of each group's best_lr and max_stable_lr side by
side, and what else differs between the sweeps. The same as
`gdexp report --sweep A --sweep B ...`."""


def main(argv: list[str]) -> int:
    """`gdexp report [--sweep ID ...] [--experiment NAME] ...`: build, attach; returns the exit status."""
    args = _parser().parse_args(argv)
    return _report(args.experiment, args.sweep, args, "gdexp report")


def compare_main(argv: list[str]) -> int:
    """`gdexp compare SWEEP_A SWEEP_B [...]`: one report of several sweeps; returns the exit status."""
    p = Parser(prog="gdexp compare", description=_COMPARE_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  gdexp compare 7ab3ae1e83b346d3... 91c0d2e4f5a6b7c8...")
    p.add_argument("sweeps", nargs="+", metavar="SWEEP", help="parent run ids of the sweeps (two or more)")
    _common(p)
    args = p.parse_args(argv)
    if len(args.sweeps) < 2:
        p.error("give two sweeps or more (one sweep: gdexp report --sweep ID)")
    return _report(None, args.sweeps, args, "gdexp compare", sweep_key="SWEEP")


def _report(experiment: str | None, sweeps: list[str] | None, args, prog: str, sweep_key: str = "--sweep") -> int:
    from gdexp.commands.exits import say_invalid
    from gdexp.core.errors import ConfigError
    from gdexp.report.build import build_report
    from gdexp.report.select import select, started
    from gdexp.tracking.reader import check_allow_list
    from gdexp.tracking.store import store_error

    try:
        check_allow_list(args.allow_module)
        check_out(args.out)  # before the store is read: a bad folder is known without it
        sel = select(experiment, sweeps, args.tracking_uri, args.allow_module, sweep_key=sweep_key)
    except ConfigError as exc:
        return say_invalid(exc)
    except (LookupError, store_error()) as exc:  # what MLflow refuses beyond gdexp's checks, in one line
        print(f"{prog}: error: {_message(exc)}", file=sys.stderr)
        return 2
    if sel.runs.empty:
        key = "--experiment" if sel.by == "experiment" else sweep_key
        return say_invalid(ConfigError(key, sel.key, f"no runs in it ({sel.uri})"))
    if sel.chosen:
        p = sel.parents[0]
        print(f"No --sweep given: the latest sweep in {sel.uri}, {sel.name} "
              f"(parent run {p.info.run_id}, started {started(p)}).")
    from gdexp.report.sections import completeness

    if completeness(sel):  # first: an unfinished sweep's report states no answer
        print(f"{completeness(sel)}; the report states no best_lr or max_stable_lr")
    out = Path(args.out) if args.out else Path("reports") / sel.folder
    files = build_report(sel, out, ui=args.ui_url)
    what = f"{len(sel.parents)} sweeps" if sel.by == "sweeps" else f"{sel.by} {sel.name}"
    print(f"Report of {what} ({len(sel.runs)} runs) in {out}/: report.html, report.md, "
          f"{len(files) - 2} figure files")
    print(_attach(sel, files))
    if sel.by == "sweeps":
        _rename_alike(sel)
    return 0


def _rename_alike(sel) -> None:
    """Parent runs of the same name, compared: each renamed `NAME [LABEL]` (the keys in which the
    sweeps differ), so that the MLflow UI's charts of the parents tell them apart."""
    from gdexp.report.select import sweep_labels
    from gdexp.tracking.store import client

    names = [p.info.run_name for p in sel.parents]
    labels = sweep_labels(sel.parents, sel.runs)
    for parent, name in zip(sel.parents, names):
        if names.count(name) > 1 and labels[parent.info.run_id] != name:
            new = f"{name} [{labels[parent.info.run_id]}]"[:250]
            # MLflow's set_tag of mlflow.runName also renames the run (runs.name): its client's
            # work, opened only here (the sweeps' names repeat)
            client(sel.uri).set_tag(parent.info.run_id, "mlflow.runName", new)
            print(f"Parent run {parent.info.run_id} renamed {new!r} (its name was another compared sweep's).")


def check_out(out: str | None) -> None:
    """Refuse (ConfigError, one line) a report folder that cannot be one: a file or a device
    there (/dev/null), a file where a folder above it should be, a place gdexp cannot write
    (/proc/x). Nothing is created; the default (under ./reports) is checked as well."""
    from gdexp.core.errors import ConfigError
    from gdexp.tracking.guards import check_writable

    path = Path(out) if out else Path("reports")
    if path.exists() and not path.is_dir():
        raise ConfigError("--out", out or "reports/...", f"{path} is not a folder (a file or a device is "
                          "there); name a folder for the report")
    reason = check_writable(path)
    if reason:
        raise ConfigError("--out", out or "reports/...", f"the report folder cannot be made: {reason}")


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="gdexp report", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--experiment", metavar="NAME",
                       help="every run of this MLflow experiment (sweep parent runs left out)")
    which.add_argument("--sweep", metavar="PARENT_RUN_ID", action="append",
                       help="the runs of one sweep, by its parent run id (printed at the end of "
                            "every sweep); give it twice or more to compare sweeps in one report. "
                            "Default, without --experiment: the latest sweep (the report says which)")
    _common(p)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR",
                   help="report folder (default: reports/<sweep name>-<first 8 characters of its "
                        "parent run id>/, reports/compare-<id>-<id>/ for several sweeps, "
                        "reports/<experiment>/); figure files of an earlier report there "
                        "(fig-*.png, anim-*.gif) are replaced")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow store (default: sqlite:///./mlflow.db); MLFLOW_TRACKING_URI, when "
                        "set, wins, as for every gdexp command")
    p.add_argument("--ui-url", metavar="URL", default=UI_URL,
                   help="where the MLflow UI serves this store, for the links from each run in the "
                        "report to its page, URL/#/experiments/<id>/runs/<run id> (default: "
                        "http://127.0.0.1:5000, where `mlflow ui` listens)")
    p.add_argument("--allow-module", metavar="MOD", action="append", default=[],
                   help="trust code in module MOD named by a stored config's _target_ (your own loss "
                        "mypkg.losses.saddle: --allow-module mypkg), to rebuild its loss for the "
                        "contour figures; repeatable. Without it such code is never imported: the "
                        "report is written without those contours and says so")


def _attach(sel, files: list[Path]) -> str:
    """Log the report files on the sweep's parent run, under report/."""
    if sel.parent_id is None:
        why = ("they belong to no sweep" if not sel.parents
               else "they compare several sweeps" if sel.by == "sweeps"
               else "they do not all belong to one sweep")
        return f"Not attached to any MLflow run: {why}."
    attach_files(sel.uri, sel.parent_id, files, "report", sel.parents[0].info.artifact_uri)
    return (f"Attached to parent run {sel.parent_id} as artifacts report/ "
            "(MLflow UI: open that run, Artifacts, report/report.html).")


def _message(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip("'\"")

