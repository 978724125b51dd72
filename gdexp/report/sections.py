"""The report's text sections as render blocks: the runs table, provenance, how to reproduce."""
from __future__ import annotations

import json
import shlex

import pandas as pd

from gdexp.report.select import Selection
from gdexp.results.summary import sweep_counts
from gdexp.tracking import TAG as _T

# The report's row order: by loss, then learning rate (the rest only breaks ties).
ORDER = ["loss", "lr", "optimizer", "run_name", "run_id"]
RUN_COLUMNS = ["loss", "optimizer", "lr", "status", "final loss", "best loss", "iterations",
               "diverged at step"]


def overview(sel: Selection) -> list[tuple]:
    counts = sweep_counts(sel.runs)
    what = (f"Sweep `{sel.name}` (parent run `{sel.key}`)" if sel.by == "sweep"
            else f"Experiment `{sel.key}`" + (f", from {len(sel.parents)} sweep(s)" if sel.parents else ""))
    numbers = ", ".join(f"{_num(v)} {k}" for k, v in counts.items() if k in ("runs", "diverged", "failed"))
    limits = ", ".join(f"{k} = {_num(v)}" for k, v in counts.items() if k in ("best_lr", "max_stable_lr"))
    experiments = ", ".join(f"`{e}`" for e in sorted(set(sel.runs["experiment"].dropna())))
    return [("h", 1, f"gdexp report: {sel.name}"),
            ("p", f"{what}; experiment {experiments or '(none)'} in `{sel.uri}`."),
            ("p", f"{numbers}" + (f"; {limits} (best_lr: the learning rate of the lowest final "
                                     "loss among runs that did not diverge; max_stable_lr: the largest "
                                     "that did not diverge)" if limits else "") + ".")]


def runs_table(runs: pd.DataFrame) -> list[tuple]:
    """One row per run, sorted by loss then learning rate; failed runs' errors listed below."""
    rows = []
    ordered = runs.sort_values(ORDER, kind="stable")
    for r in ordered.itertuples():
        rows.append([r.loss or "", r.optimizer or "", _num(r.lr), r.status or "",
                     _num(r.final_loss), _num(r.best_loss), _num(r.iterations), _num(r.diverged_step)])
    blocks = [("h", 2, "Runs"), ("table", RUN_COLUMNS, rows, {2, 4, 5, 6, 7})]
    failed = ordered[ordered["mlflow_status"] != "FINISHED"]
    if len(failed):
        blocks.append(("ul", [f"`{r.run_name}` ({r.run_id}) {r.status}: {r.error or 'no error recorded'}"
                              for r in failed.itertuples()]))
    return blocks


def provenance(sel: Selection) -> list[tuple]:
    """What the runs were made with: code version, environment, command, each run's config hash."""
    blocks = [("h", 2, "Provenance")]
    versions = ", ".join(sorted(set(sel.runs["version"].dropna()))) or "not recorded"
    blocks.append(("p", f"gdexp version of the runs: {versions}."))
    for parent in sel.parents:
        t = parent.data.tags
        if len(sel.parents) > 1:
            blocks.append(("h", 3, f"Sweep `{t.get(_T + 'sweep_name', parent.info.run_name)}` "
                                   f"(`{parent.info.run_id}`)"))
        packages = json.loads(t.get(_T + "packages", "{}"))
        blocks.append(("ul", [
            f"git commit: `{t.get(_T + 'git_commit', 'not recorded')}`, "
            f"uncommitted changes: {t.get(_T + 'git_dirty', 'not recorded')}",
            f"Python {t.get(_T + 'python', '?')} on `{t.get(_T + 'platform', '?')}`",
            "packages: " + (", ".join(f"{k} {v}" for k, v in sorted(packages.items())) or "not recorded"),
            f"command: `{t.get(_T + 'command', 'not recorded')}`",
            f"sweep folder: `{t.get(_T + 'sweep_dir', 'not recorded')}`",
        ]))
    if not sel.parents:
        blocks.append(("p", "These runs belong to no sweep: no command line or environment was recorded."))
    ordered = sel.runs.sort_values(ORDER, kind="stable")
    has_data = ordered["data_sha256"].notna().any()
    header = ["run", "run id", "config hash"] + (["data sha256"] if has_data else [])
    rows = [[r.run_name, f"`{r.run_id}`", f"`{r.config_hash or ''}`"]
            + ([f"`{r.data_sha256}`" if r.data_sha256 else ""] if has_data else [])
            for r in ordered.itertuples()]
    blocks.append(("table", header, rows, set()))
    return blocks


def reproduce(sel: Selection) -> list[tuple]:
    """The commands that rerun the sweep, check its runs, and rebuild this report."""
    uri = shlex.quote(sel.uri)
    lines = []
    for parent in sel.parents:
        t = parent.data.tags
        commit = t.get(_T + "git_commit", "unknown")
        if commit != "unknown":
            dirty = "  # the tree had uncommitted changes then" if t.get(_T + "git_dirty") == "true" else ""
            lines.append(f"git checkout {commit}{dirty}")
        if _T + "command" in t:
            lines += ["# run the sweep again, as new runs in the same store",
                      f"MLFLOW_TRACKING_URI={uri} {t[_T + 'command']}"]
    selector = (f"--sweep {sel.key}" if sel.by == "sweep"
                else f"--experiment {shlex.quote(sel.key)}")
    lines += ["# re-execute every run from its logged config and compare its curve step by step",
              f"gdexp rerun {selector} --tracking-uri {uri}",
              "# rebuild this report",
              f"gdexp report {selector} --tracking-uri {uri}"]
    return [("h", 2, "Reproduce"), ("code", "\n".join(lines))]


def _num(value) -> str:
    """A table number: '' when missing, integers as integers, else 6 significant digits."""
    if value is None or pd.isna(value):
        return ""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
