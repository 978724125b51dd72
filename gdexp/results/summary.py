"""A sweep's outcome as the CLI prints it and its parent run keeps it, from gdexp.results.groups.

``summarize(runs)`` splits a sweep's runs into groups (every swept key but
the learning rate and the seed), aggregates the seeds, and answers each
group (best_lr, max_stable_lr). The same Summary gives

- ``text()``: the lines the CLI prints at the end of a sweep: the runs table
  (or, with seeds, one row per group and learning rate: mean, std, min, max,
  count, diverged), then the counts and each group's answer;
- ``metrics()``: the parent run's metrics (``metric_names`` documents their names);
- ``tables()``: the parent run's CSV files: ``summary.csv`` (one row per run,
  with its group), ``answers.csv`` (one row per group), and with seeds
  ``aggregate.csv`` (one row per group and learning rate).

Numbers are written column by column in one format (``number_column``), and
a diverged run's result reads ``diverged (step k)``, never its last finite
loss.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gdexp.core.outcomes import DESCENT_STATUSES, DIVERGED, PRUNED
from gdexp.results.ties import SummaryConfig, rtol_of_runs
from gdexp.results.groups import (GROUP, REPEAT_KEY, aggregate, answers, group_keys, label, monitor,
                                  swept_keys, with_groups)

# The metrics a sweep's runs are summarized by, where the runs have them (final_loss always).
SUMMARIZED = ("final_loss", "val_loss", "val_accuracy")
# Each group's answers, as parent-run metrics.
ANSWERS = ("best_lr", "max_stable_lr")
# MLflow's longest metric key (mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH).
_MAX_KEY = 250


@dataclass(frozen=True)
class Summary:
    """A sweep's runs split into groups, aggregated and answered (see the module docstring).

    Attributes:
        runs: the runs (load_runs' table) with GROUP.
        keys: the swept keys that name groups; [] when only the learning rate (and the seed) varies.
        metric, mode: what best_lr is judged by (gdexp.results.groups.monitor).
        cells: one row per group and learning rate (gdexp.results.groups.aggregate, every
            SUMMARIZED metric the runs have), with the key columns.
        answers: one row per group (gdexp.results.groups.answers), with the key columns.
        repeats: some learning rate of some group ran more than once (seeds).
        rtol: the relative tolerance of a tie (summary.rtol).
    """

    runs: pd.DataFrame
    keys: list[str]
    metric: str
    mode: str
    cells: pd.DataFrame
    answers: pd.DataFrame
    repeats: bool
    rtol: float = SummaryConfig.rtol

    def counts(self) -> dict[str, float]:
        """runs, diverged, failed (runs without a descent result), and pruned where any was."""
        status = self.runs["status"]
        out = {"runs": float(len(self.runs)), "diverged": float((status == DIVERGED).sum()),
               "failed": float((~status.isin(DESCENT_STATUSES)).sum())}
        if (status == PRUNED).any():
            out["pruned"] = float((status == PRUNED).sum())
        return out

    def metrics(self) -> dict[str, float]:
        """The parent run's metrics: counts, then each group's finite best_lr and max_stable_lr."""
        out = self.counts()
        names = metric_names(self.answers)
        for _, row in self.answers.iterrows():
            for answer in ANSWERS:
                if np.isfinite(row[answer]):
                    out[answer + names[str(row[GROUP])]] = float(row[answer])
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        """file name -> table, for the parent run's artifacts."""
        runs = self.runs.copy()
        runs[GROUP] = runs[GROUP].astype(str)
        out = {"summary.csv": runs, "answers.csv": _plain(self.answers)}
        if (self.runs["status"] == PRUNED).any():
            out["pruned.csv"] = self.pruned()
        if self.repeats:
            out["aggregate.csv"] = _plain(self.cells)
        return out

    def pruned(self) -> pd.DataFrame:
        """Which learning rates successive halving pruned, and at which step: GROUP, lr,
        pruned_step, runs (its seeds), sorted by group, step, lr."""
        runs = self.runs[self.runs["status"] == PRUNED]
        table = (runs.groupby([GROUP, "lr"], observed=True)["pruned_step"].agg(["max", "size"]).reset_index()
                 .rename(columns={"max": "pruned_step", "size": "runs"}))
        table[GROUP] = table[GROUP].astype(str)
        return table.sort_values([GROUP, "pruned_step", "lr"], kind="stable").reset_index(drop=True)

    def text(self) -> str:
        """The table, the counts and the answers, as the CLI prints them."""
        table = self.cell_table() if self.repeats else self.run_table()
        return "\n".join([table, *self.answer_lines()])

    def run_table(self) -> str:
        """One line per run: the group keys, the seed where it varies, lr, status, results, run name."""
        if self.runs.empty:
            return "(no runs)"
        runs = self.runs.sort_values([c for c in (GROUP, "lr", REPEAT_KEY, "run_name") if c in self.runs.columns],
                                     kind="stable")
        columns = {_short(k): value_column(runs[k]) for k in self.keys}
        if REPEAT_KEY in runs.columns and runs[REPEAT_KEY].nunique() > 1:
            columns[REPEAT_KEY] = number_column(runs[REPEAT_KEY])
        columns["lr"] = number_column(runs["lr"])
        columns["status"] = runs["status"].fillna("").tolist()
        for i, metric in enumerate(_present(runs, SUMMARIZED)):
            columns[metric] = result_column(runs, metric, mark=i == 0)
        columns["iterations"] = number_column(runs["iterations"])
        columns["run_name"] = runs["run_name"].fillna("").tolist()
        return _render(columns)

    def cell_table(self) -> str:
        """One line per group and learning rate: runs, diverged, and the metric's statistics over seeds."""
        cells = self.cells
        columns = {_short(k): value_column(cells[k]) for k in self.keys}
        columns["lr"] = number_column(cells["lr"])
        columns["runs"] = number_column(cells["runs"])
        if cells["failed"].any():
            columns["failed"] = number_column(cells["failed"])
        columns["diverged"] = [f"{d}/{r - f}" for d, r, f in zip(cells["diverged"], cells["runs"], cells["failed"])]
        m = self.metric
        for stat in ("mean", "std", "min", "max"):
            columns[f"{m} {stat}"] = number_column(cells[f"{m}_{stat}"])
        # Where every seed diverged there is no statistic: say so, with the steps.
        columns[f"{m} mean"] = [_diverged_cell(c) if c["diverged"] and not c[f"{m}_count"] else text
                                for text, (_, c) in zip(columns[f"{m} mean"], cells.iterrows())]
        columns[f"{m} count"] = number_column(cells[f"{m}_count"])
        return _render(columns)

    def answer_lines(self) -> list[str]:
        """The counts line, then each group's answer; what they mean where seeds or a metric need saying."""
        counts = ", ".join(f"{k}={int(v)}" for k, v in self.counts().items())
        single = len(self.answers) == 1
        lines = []
        if single:
            lines.append(", ".join([counts, *_answer_parts(self.answers.iloc[0])]))
        else:
            lines.append(f"{counts}; {len(self.answers)} groups by {', '.join(map(_short, self.keys))}")
            lines += [f"  {row[GROUP]}: " + ", ".join(_answer_parts(row)) for _, row in self.answers.iterrows()]
        if "pruned" in self.counts():
            lines += self._pruned_lines(single)
        if self.repeats or self.metric != "final_loss":
            better = "lowest" if self.mode == "min" else "highest"
            mean = " mean" if self.repeats else ""
            over = " over seeds" if self.repeats else ""
            who = "no seed" if self.repeats else "no run"
            lines.append(f"best_lr: the {better}{mean} {self.metric}{over} among learning rates where {who} "
                         f"diverged; max_stable_lr: the largest learning rate where {who} diverged")
        for _, row in self.answers.iterrows():
            lines += [f"  {note}" if single else f"  {row[GROUP]}: {note}" for note in self._notes(row)]
        return lines + self._stops()

    def _notes(self, row) -> list[str]:
        """A group's tie range (or, with seeds, the range the paired test keeps) and edge flags."""
        notes = []
        if pd.notna(row["best_lr"]) and row["best_lr_low"] < row["best_lr_high"]:
            span = f"[{_g(row['best_lr_low'])}, {_g(row['best_lr_high'])}]"
            if row["tested"]:
                notes.append(f"any lr in {span} is not significantly worse than the best mean {self.metric} "
                             f"{_g(row['best_value'])} (one-sided paired t-test over seeds, 5%); "
                             f"fastest: {_g(row['best_lr'])}")
            else:
                notes.append(f"any lr in {span} reaches {self.metric} {_g(row['best_value'])} (within "
                             f"summary.rtol={_g(self.rtol)}); fastest: {_g(row['best_lr'])}")
        edge = [name for name in ("best_lr", "max_stable_lr") if row[f"{name}_at_edge"]]
        if edge:
            notes.append(f"{' and '.join(edge)} at the grid's edge: extend the grid")
        return notes

    def _stops(self) -> list[str]:
        """Which runs stopped at a kink (grad_undefined) or never moved (a stationary start)."""
        if "stop_reason" not in self.runs.columns:
            return []
        lines = []
        for reason, what in (("grad_undefined", "stopped where the gradient is undefined (a kink), "
                                                "not diverged: their best loss stands"),
                             ("stationary", "never moved: the start is already stationary")):
            hit = self.runs[self.runs["stop_reason"] == reason]
            if len(hit):
                names = ", ".join(f"lr={_g(lr)}" for lr in sorted(hit["lr"].dropna().unique()))
                lines.append(f"{len(hit)} run(s) {what}: {names}")
        return lines


    def _pruned_lines(self, single: bool) -> list[str]:
        """Per group: how many learning rates were pruned at each step, and their range."""
        lines = ["pruned by successive halving (answers are among the runs that finished; a pruned "
                 "learning rate's stability past its prune step is unknown):"]
        for group, part in self.pruned().groupby(GROUP, sort=False):
            steps = [f"{len(at)} at step {int(step)} (lr {_g(at['lr'].min())}..{_g(at['lr'].max())})"
                     for step, at in part.groupby("pruned_step", sort=True)]
            lines.append("  " + ("" if single else f"{group}: ") + ", ".join(steps))
        return lines


def summarize(runs: pd.DataFrame, searched: Sequence[str] = (), rtol: float | None = None) -> Summary:
    """Group, aggregate and answer a sweep's runs (one row per run, load_runs' columns).

    `searched`: keys a search sweeper sampled besides the learning rate (Optuna's
    ranges): every trial has its own value, so they never split groups.
    `rtol`: the tolerance of a tie; default the runs' `summary.rtol` (1e-6 where absent).

    >>> runs = pd.DataFrame({"loss.eigenvalues": ["[1, 10]"] * 2 + ["[1, 100]"] * 2, "lr": [0.01, 0.1] * 2,
    ...     "optimizer.lr": [0.01, 0.1] * 2, "seed": 0, "run_name": list("abcd"), "iterations": [1000, 175, 1000, 3],
    ...     "status": ["max_iters", "converged", "max_iters", "diverged"], "diverged": [False, False, False, True],
    ...     "diverged_step": [None, None, None, 3], "final_loss": [9.3e-10, 4.8e-17, 9.3e-10, 2.65721e7]})
    >>> s = summarize(runs)
    >>> print(s.text())
    loss.eigenvalues   lr    status        final_loss iterations run_name
              [1,10] 0.01 max_iters        9.3000e-10       1000        a
              [1,10]  0.1 converged        4.8000e-17        175        b
             [1,100] 0.01 max_iters        9.3000e-10       1000        c
             [1,100]  0.1  diverged diverged (step 3)          3        d
    runs=4, diverged=1, failed=0; 2 groups by loss.eigenvalues
      loss.eigenvalues=[1,10]: best_lr=0.1, max_stable_lr=0.1
      loss.eigenvalues=[1,100]: best_lr=0.01, max_stable_lr=0.01, min_diverged_lr=0.1
      loss.eigenvalues=[1,10]: best_lr and max_stable_lr at the grid's edge: extend the grid
      loss.eigenvalues=[1,100]: best_lr at the grid's edge: extend the grid
    >>> s.metrics()["max_stable_lr/loss.eigenvalues-1_100"]
    0.01
    """
    keys = group_keys(runs, searched)
    grouped = with_groups(runs, keys)
    # Nothing swept: one group, named by the defaults, which need no column.
    named = keys if [k for k in swept_keys(runs) if k not in searched] else []
    metric, mode = monitor(grouped)
    metrics = [metric, *(m for m in _present(grouped, SUMMARIZED) if m != metric)]
    cells = _with_keys(_aggregate(grouped, metrics), grouped, keys)
    rtol = rtol_of_runs(runs) if rtol is None else rtol
    answered = _with_keys(answers(grouped, metric, mode, rtol), grouped, keys)
    repeats = bool(len(answered)) and int(answered["repeats"].max()) > 1
    return Summary(grouped, named, metric, mode, cells, answered, repeats, rtol)


def aggregate_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per group and learning rate: the key values, then gdexp.results.groups.aggregate's
    columns for every SUMMARIZED metric the runs have (what ``load_runs(aggregate=True)`` returns)."""
    return summarize(runs).cells


def metric_names(answered: pd.DataFrame) -> dict[str, str]:
    """Each group's suffix of the parent-run metric names: '' for one group, else '/<group>'.

    MLflow takes letters, digits, ``_ - . /`` and spaces in a metric name, so a
    group label ``optimizer=adam, loss.eigenvalues=[1,100]`` is written
    ``optimizer-adam loss.eigenvalues-1_100``: each ``key=value`` as ``key-value``
    (a choice ``G.name`` as ``G``), pairs apart by a space, any other character
    of a value as ``_``. The metric is then ``best_lr/optimizer-adam
    loss.eigenvalues-1_100``; the MLflow UI shows the ``best_lr/...`` charts in one
    section. Two labels that would write alike get ``-2``, ``-3``.

    >>> metric_names(pd.DataFrame({"group": ["optimizer=adam, loss.eigenvalues=[1,100]", "optimizer=gd, loss.x=-0.5"]}))
    {'optimizer=adam, loss.eigenvalues=[1,100]': '/optimizer-adam loss.eigenvalues-1_100', 'optimizer=gd, loss.x=-0.5': '/optimizer-gd loss.x--0.5'}
    """
    labels = [str(g) for g in answered[GROUP]]
    if len(labels) <= 1:
        return {g: "" for g in labels}
    out, used = {}, set()
    for text in labels:
        pairs = [pair.partition("=") for pair in text.split(", ")]
        name = " ".join(f"{key}-{_metric_safe(value)}" for key, _, value in pairs)
        name = name[: _MAX_KEY - len("max_stable_lr/") - 4]
        unique, k = name, 1
        while unique in used:
            k += 1
            unique = f"{name}-{k}"
        used.add(unique)
        out[text] = "/" + unique
    return out


def number_column(values) -> list[str]:
    """A column of numbers in one format: '' where missing.

    Integers (every value whole and below 1e6) as integers; else, when every
    non-zero magnitude lies in [1e-3, 1e5), 6 significant digits without an
    exponent; else every value in scientific notation with 5 significant
    digits. So no column mixes ``4803012855`` with ``2.65721e+07``.

    >>> number_column([1000, 175, None])
    ['1000', '175', '']
    >>> number_column([0.01, 0.1, 1.0])
    ['0.01', '0.1', '1']
    >>> number_column([4803012855.0, 2.65721e7, 0.5])
    ['4.8030e+09', '2.6572e+07', '5.0000e-01']
    """
    numbers = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").astype(float)
    finite = numbers[np.isfinite(numbers)]
    if finite.empty:
        return ["" if pd.isna(v) else _special(v) for v in numbers]
    if (finite == finite.round()).all() and (finite.abs() < 1e6).all():
        fmt = lambda v: str(int(v))  # noqa: E731
    else:
        magnitudes = finite[finite != 0].abs()
        fixed = magnitudes.empty or ((magnitudes >= 1e-3) & (magnitudes < 1e5)).all()
        fmt = (lambda v: f"{v:.6g}") if fixed else (lambda v: f"{v:.4e}")  # noqa: E731
    return ["" if pd.isna(v) else fmt(v) if math.isfinite(v) else _special(v) for v in numbers]


def result_column(runs: pd.DataFrame, metric: str, mark: bool = True) -> list[str]:
    """A metric's column: a diverged run's cell reads ``diverged (step k)`` (with `mark`, else
    stays empty), never its last finite value."""
    values = number_column(runs[metric].where(~runs["diverged"].astype(bool)))
    steps = runs["diverged_step"].tolist()
    return [(f"diverged (step {_step(s)})" if mark else "") if d else v
            for v, d, s in zip(values, runs["diverged"], steps)]


def value_column(values) -> list[str]:
    """A key's values as in group labels (lists compact, floats exact)."""
    return [label({"k": v}).split("=", 1)[1] for v in values]


def unanswered(row, num=None) -> str | None:
    """Why a group has no stable learning rate (None: it has one): its runs were pruned,
    all diverged, or none finished (every run failed). `num` formats a learning rate.

    >>> unanswered(pd.Series({"max_stable_lr": float("nan"), "min_diverged_lr": float("nan"), "failed": 2}))
    'no learning rate finished (2 runs failed)'
    """
    num = num or _g
    if pd.notna(row["max_stable_lr"]):
        return None
    if row.get("pruned", 0):
        return f"no learning rate finished stable ({int(row['pruned'])} runs pruned)"
    if pd.isna(row.get("min_diverged_lr")):
        failed = row.get("failed", 0)
        return "no learning rate finished" + (f" ({int(failed)} runs failed)" if failed else "")
    return f"every learning rate diverged (the smallest: {num(row['min_diverged_lr'])})"


def _answer_parts(row) -> list[str]:
    if unanswered(row) is not None:
        return [unanswered(row)]
    above = row.get("pruned_above", 0)
    parts = [f"best_lr={_g(row['best_lr'])}" if pd.notna(row["best_lr"]) else "best_lr: none",
             f"max_stable_lr={_g(row['max_stable_lr'])}"
             + (f" (among finished runs; {int(above)} pruned learning rates above it: unknown)" if above else "")]
    if pd.notna(row["min_diverged_lr"]):
        parts.append(f"min_diverged_lr={_g(row['min_diverged_lr'])}")
    return parts


def _diverged_cell(cell) -> str:
    lo, hi = _step(cell["diverged_step_min"]), _step(cell["diverged_step_max"])
    return f"diverged (step {lo})" if lo == hi else f"diverged (steps {lo}-{hi})"


def _aggregate(grouped: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """aggregate() of each metric, side by side (the shared columns once)."""
    out = aggregate(grouped, metrics[0])
    for metric in metrics[1:]:
        more = aggregate(grouped, metric)
        out = out.merge(more[[GROUP, "lr", *(c for c in more.columns if c.startswith(metric + "_"))]],
                        on=[GROUP, "lr"], how="left", sort=False)
    return out


def _with_keys(table: pd.DataFrame, grouped: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The table with each group's key values as columns, first."""
    if table.empty:
        return table.reindex(columns=[*keys, *table.columns])
    firsts = grouped.drop_duplicates(GROUP)
    by_group = {str(g): tuple(v) for g, v in zip(firsts[GROUP], firsts[keys].itertuples(index=False))}
    values = pd.DataFrame([by_group[str(g)] for g in table[GROUP]], columns=keys, index=table.index)
    return pd.concat([values, table], axis=1)


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out[GROUP] = out[GROUP].astype(str)
    return out


def _present(runs: pd.DataFrame, metrics) -> list[str]:
    return [m for m in metrics if m in runs.columns and (m == "final_loss" or runs[m].notna().any())]


def _render(columns: dict[str, list[str]]) -> str:
    return pd.DataFrame(columns).to_string(index=False)


def _short(key: str) -> str:
    return key[: -len(".name")] if key.count(".") == 1 and key.endswith(".name") else key


def _metric_safe(text: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", text).strip("_") or "_"


def _g(value) -> str:
    return f"{float(value):g}"


def _step(value) -> str:
    return "?" if value is None or pd.isna(value) else str(int(value))


def _special(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
