"""The report's text sections as render blocks: the answers, the runs table, provenance, how to reproduce."""
from __future__ import annotations

import json
import shlex

import pandas as pd

from gdexp.report.select import TAG as _T
from gdexp.core.outcomes import DESCENT_STATUSES
from gdexp.report.select import Selection, sweep_labels, started
from gdexp.report.render import md_escape
from gdexp.results.groups import GROUP, REPEAT_KEY, label, swept_keys
from gdexp.results.summary import unanswered

ORDER = [GROUP, "lr", REPEAT_KEY, "run_name", "run_id"]   # the runs table's row order
DEFINITIONS = ("best_lr: the learning rate with the {better} {metric} among those where no run diverged{mean}; "
               "max_stable_lr: the largest learning rate where no run diverged{seeds}; "
               "min_diverged_lr: the smallest where one did.")


def overview(sel: Selection, answers: pd.DataFrame, keys: list[str], metric: str, mode: str,
             repeats: bool) -> list[tuple]:
    """The title, what was selected, and each group's answer: the report's first lines."""
    if sel.by == "sweep":
        p = sel.parents[0]
        what = f"Sweep `{sel.name}` (parent run `{sel.key}`, started {started(p)})"
    elif sel.by == "sweeps":
        what = "Sweeps " + ", ".join(f"`{name}` (`{pid}`, started {started(p)})"
                                     for p, (pid, name) in zip(sel.parents, sweep_labels(sel.parents, sel.runs).items()))
    else:
        what = f"Experiment `{sel.key}`" + (f", from {len(sel.parents)} sweep(s)" if sel.parents else "")
    experiments = ", ".join(f"`{e}`" for e in sorted(set(sel.runs["experiment"].dropna())))
    runs = sel.runs
    unfinished = int(runs["status"].isin(["running", "killed"]).sum())
    counts = (f"{len(runs)} runs, {int(runs['diverged'].sum())} diverged, "
              f"{int((~runs['status'].isin((*DESCENT_STATUSES, 'running', 'killed'))).sum())} failed"
              + (f", {unfinished} killed or still running" if unfinished else "") + "; "
              + (f"{len(answers)} groups by {', '.join(f'`{_key(k)}`' for k in keys)}" if len(answers) > 1
                 else "one group")
              + (f", each learning rate repeated over `{REPEAT_KEY}`" if repeats else "") + ".")
    definitions = DEFINITIONS.format(better="lowest" if mode == "min" else "highest",
                                     metric=metric.replace("_", " "), mean=" (the mean over seeds)" if repeats else "",
                                     seeds=" (no seed diverged)" if repeats else "")
    incomplete = completeness(sel)
    if incomplete:  # answers over part of a grid would read as the grid's
        folder = sel.parents[0].data.tags.get(f"{_T}sweep_dir")
        return [("h", 1, f"gdexp report: {sel.name}"),
                ("p", f"**{incomplete}.** No best_lr or max_stable_lr is stated for an unfinished sweep; "
                      f"`gdexp resume {folder}` finishes it."),
                ("p", f"{what}; experiment {experiments or '(none)'} in `{sel.uri}`."),
                ("p", counts)]
    return [("h", 1, f"gdexp report: {sel.name}"),
            ("p", f"{what}; experiment {experiments or '(none)'} in `{sel.uri}`."),
            ("p", counts),
            ("ul", [answer_line(a, metric) for _, a in answers.iterrows()]),
            ("p", definitions)]


def completeness(sel: Selection) -> str | None:
    """'31 of 100 planned runs recorded; sweep KILLED' for one sweep that has not recorded its whole
    plan (the parent's gdexp.planned_runs) or did not end; None otherwise."""
    if sel.by != "sweep":
        return None
    parent = sel.parents[0]
    planned, status = parent.data.tags.get(f"{_T}planned_runs"), parent.info.status
    recorded = int(sel.runs["mlflow_status"].isin(["FINISHED", "FAILED"]).sum())
    if status in ("FINISHED", "FAILED") and (planned is None or recorded >= int(planned)):
        return None
    return f"{recorded}{f' of {planned} planned' if planned else ''} runs recorded; sweep {status}"


def answer_line(a, metric: str) -> str:
    """One group's answer, as the CLI prints it.

    >>> answer_line(pd.Series({"group": "optimizer=gd", "best_lr": 0.001, "best_value": 4.47,
    ...     "max_stable_lr": 0.001, "min_diverged_lr": 0.00316228, "lr_max": 1.0}), "final_loss")
    '`optimizer=gd`: best_lr=0.001 (final loss 4.47), max_stable_lr=0.001, min_diverged_lr=0.00316228'
    """
    if unanswered(a, _num) is not None:
        return f"`{a[GROUP]}`: {unanswered(a, _num)}"
    mean = "mean " if a.get("repeats", 1) > 1 else ""
    best = (f"best_lr={_num(a['best_lr'])} ({mean}{metric.replace('_', ' ')} {_num(a['best_value'])})"
            if pd.notna(a["best_lr"]) else "best_lr: none (no result)")
    if pd.notna(a["best_lr"]) and a.get("best_lr_low", a["best_lr"]) < a.get("best_lr_high", a["best_lr"]):
        span = f"[{_num(a['best_lr_low'])}, {_num(a['best_lr_high'])}]"
        what = ("is not significantly worse (one-sided paired t-test over seeds, 5%)" if a.get("tested")
                else f"reaches {_num(a['best_value'])}")
        best += f" (any lr in {span} {what}; fastest: {_num(a['best_lr'])})"
    if a.get("best_lr_at_edge"):
        best += " (at the grid's edge: extend the grid)"
    top = (" (the largest tried: the limit lies above the grid; at the grid's edge: extend the grid)"
           if a["max_stable_lr"] == a.get("lr_max") else "")
    low = f", min_diverged_lr={_num(a['min_diverged_lr'])}" if pd.notna(a["min_diverged_lr"]) else ""
    return f"`{a[GROUP]}`: {best}, max_stable_lr={_num(a['max_stable_lr'])}{top}{low}"


def differences(table: pd.DataFrame, metric: str, mode: str) -> list[tuple]:
    """Each pair of groups at their best learning rates: the paired difference over seeds, its 95%
    interval and p-value (gdexp.results.ties.group_differences); nothing without seeds."""
    if table.empty:
        return []
    favours = "negative" if mode == "min" else "positive"
    rows = [[f"`{r.group_a}` (lr {_num(r.lr_a)})", f"`{r.group_b}` (lr {_num(r.lr_b)})", str(int(r.n)),
             _num(r.diff), f"[{_num(r.ci_low)}, {_num(r.ci_high)}]", _num(r.p_value)] for r in table.itertuples()]
    return [("h", 2, "Paired differences over seeds"),
            ("p", f"Each pair of groups at their best learning rates: the {metric.replace('_', ' ')} of the first "
                  f"minus the second, paired by seed (a {favours} difference favours the first), with its 95% interval (Student's t) and the two-sided p-value of a paired t-test."),
            ("table", ["first", "second", "seeds", "mean difference", "95% interval", "p-value"], rows, {2, 3, 5})]


def runs_table(runs: pd.DataFrame, keys: list[str], metric: str, urls: dict[str, str],
               by_sweep: bool = False) -> list[tuple]:
    """One row per run, by group, lr and seed; a diverged run's result reads "diverged at step k".

    Columns: the sweep (in a comparison), loss, optimizer and every other key
    that names groups, the seed where it varies, lr, status, the result,
    best loss, iterations, and the run's name linked to its MLflow page.
    """
    shown = [k for k in ("loss.name", "optimizer.name") if k in runs.columns]
    shown += [k for k in keys if k not in shown]
    seeds = REPEAT_KEY in runs.columns and runs[REPEAT_KEY].nunique(dropna=False) > 1
    header = (["sweep"] if by_sweep else []) + [_key(k) for k in shown] + ([REPEAT_KEY] if seeds else []) + \
        ["lr", "status", metric.replace("_", " "), "best loss", "iterations", "run"]
    rows = []
    ordered = runs.sort_values([c for c in ORDER if c in runs.columns], kind="stable")
    for _, r in ordered.iterrows():
        result = f"diverged at step {_num(r['diverged_step'])}" if r["diverged"] else _num(r[metric])
        url = urls.get(r["run_id"])
        rows.append(([str(r["sweep"])] if by_sweep else []) + [_value(r[k]) for k in shown]
                    + ([_num(r[REPEAT_KEY])] if seeds else [])
                    + [_num(r["lr"]), r["status"] or "", result, _num(r["best_loss"]), _num(r["iterations"]),
                       f"[{md_escape(r['run_name'])}]({url})" if url else str(r["run_name"])])
    first = len(header) - 6
    blocks = [("h", 2, "Runs"), ("table", header, rows, {first, first + 2, first + 3, first + 4}
                                 | ({first - 1} if seeds else set()))]
    failed = ordered[ordered["mlflow_status"] != "FINISHED"]
    if len(failed):
        blocks.append(("ul", [f"`{r.run_name}` ({r.run_id}) {r.status}: {r.error or 'no error recorded'}"
                              for r in failed.itertuples()]))
    return blocks


def comparison(sel: Selection, answers: pd.DataFrame, keys: list[str]) -> list[tuple]:
    """The sweeps' answers side by side (a row per group, two columns per sweep), and what differs."""
    names = list(sweep_labels(sel.parents, sel.runs).values())
    split = answers[GROUP].astype(str).str.split(": ", n=1, expand=True)
    table = answers.assign(sweep=split[0], setting=split[1])
    settings = list(dict.fromkeys(table["setting"]))
    header = ["group"] + [f"{n} {col}" for n in names for col in ("best_lr", "max_stable_lr")]
    rows = []
    for setting in settings:
        row = [setting]
        for n in names:
            hit = table[(table["sweep"] == n) & (table["setting"] == setting)]
            row += ([_num(hit["best_lr"].iloc[0]), _num(hit["max_stable_lr"].iloc[0])] if len(hit) else ["", ""])
        rows.append(row)
    blocks = [("h", 2, "The sweeps side by side"),
              ("table", header, rows, set(range(1, len(header))))]
    differ = [k for k in swept_keys(sel.runs) if k not in keys]
    if differ:
        per = []
        for n in names:
            part = sel.runs[sel.runs["sweep"] == n]
            values = {k: part[k].dropna().unique() for k in differ}
            per.append(f"`{n}`: " + ", ".join(f"`{label({k: v[0]})}`" if len(v) == 1 else f"`{_key(k)}` varies"
                                              for k, v in values.items() if len(v)))
        blocks.append(("p", "Beyond the groups, the sweeps differ in: " + "; ".join(per) + "."))
    return blocks


def provenance(sel: Selection, runs: pd.DataFrame) -> list[tuple]:
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
    ordered = runs.sort_values([c for c in ORDER if c in runs.columns], kind="stable")
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
    selectors = ([f"--experiment {shlex.quote(sel.key)}"] if sel.by == "experiment"
                 else [f"--sweep {p.info.run_id}" for p in sel.parents])
    lines += ["# re-execute every run from its logged config and compare its curve step by step",
              *(f"gdexp rerun {s} --tracking-uri {uri}" for s in selectors),
              "# rebuild this report",
              f"gdexp report {' '.join(selectors)} --tracking-uri {uri}"]
    return [("h", 2, "Reproduce"), ("code", "\n".join(lines))]


def _key(key: str) -> str:
    return key[: -len(".name")] if key.count(".") == 1 and key.endswith(".name") else key


def _value(value) -> str:
    """A key's value in a table cell, written as in a group label."""
    return label({"k": value}).split("=", 1)[1]


def _num(value) -> str:
    """A table number: '' when missing, integers as integers, else 6 significant digits."""
    if value is None or pd.isna(value):
        return ""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
