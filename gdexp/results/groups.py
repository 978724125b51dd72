"""Runs grouped by what a sweep varied, repeats aggregated, and each group's answer.

The one implementation behind the CLI summary, `summary.csv` and the report.
It works on a load_runs-style table (gdexp.tracking.reader builds it): one row
per run, with

- `lr` (float), `status` (converged, diverged, max_iters; failed, killed or
  running for a run without a descent result), `diverged` (bool),
  `diverged_step`, and the metric compared (`final_loss`, or a validation
  metric such as `val_loss`);
- every config param under its key: dotted for a group's keys
  (`optimizer.name`, `optimizer.lr`, `loss.eigenvalues`), plain for the
  top-level ones (`seed`, `init`).

A sweep's question is "which learning rate, for each setting of the rest".
So runs are split into groups by every key that varies except the learning
rate and the seed (repeats of one setting), and within a group by lr:

>>> import pandas as pd
>>> runs = pd.DataFrame({
...     "optimizer.name": ["gd", "gd", "gd", "adam", "adam", "adam"],
...     "optimizer.eps": [None, None, None, 1e-8, 1e-8, 1e-8],   # adam's default, not swept
...     "optimizer.lr": [0.01, 0.1, 1.0, 0.01, 0.1, 1.0],
...     "lr": [0.01, 0.1, 1.0, 0.01, 0.1, 1.0],
...     "seed": [0, 0, 0, 0, 0, 0],
...     "status": ["max_iters", "converged", "diverged", "max_iters", "max_iters", "converged"],
...     "diverged": [False, False, True, False, False, False],
...     "diverged_step": [None, None, 4, None, None, None],
...     "final_loss": [0.5, 1e-6, 2.6e13, 3.0, 0.2, 1e-4]})
>>> swept_keys(runs)
['optimizer.name', 'optimizer.eps']
>>> group_keys(runs)      # eps follows from the optimizer: it names nothing
['optimizer.name']
>>> print(answers(runs)[["group", "best_lr", "max_stable_lr", "min_diverged_lr"]].to_string(index=False))
         group  best_lr  max_stable_lr  min_diverged_lr
optimizer=adam      1.0            1.0              NaN
  optimizer=gd      0.1            0.1              1.0
"""
# Kept whole (over ~300 lines): the one implementation of groups, aggregates and answers, and its labels.
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from gdexp.core.outcomes import DESCENT_STATUSES, PRUNED
from gdexp.results.text import list_text, number_text
from gdexp.results.ties import ALPHA, MIN_SEEDS, tied, worse_p_value

GROUP = "group"                      # the column with_groups adds: each run's group label
LR_KEYS = ("lr", "optimizer.lr")     # the learning rate: the x axis, never a group key
REPEAT_KEY = "seed"                  # runs that differ only in it are repeats of one setting
TOP_LEVEL_PARAMS = ("init", "seed")  # conf/config.yaml's own keys; every other param is dotted
BOOKKEEPING = ("tracking.", "hydra.")  # where runs are recorded, not what they compute
# A section's implementation (`loss._target_`): it changes with the section's `name`, which says it.
IMPLEMENTATION = "._target_"
# Who names a group when nothing but the learning rate (and the seed) varies.
DEFAULT_KEYS = ("loss.name", "optimizer.name")


def swept_keys(runs: pd.DataFrame) -> list[str]:
    """The param keys whose values differ between runs.

    Params are the dotted columns and the top-level config keys
    (TOP_LEVEL_PARAMS); the learning rate (LR_KEYS), the seed and the
    bookkeeping keys (`tracking.*`, `hydra.*`) and the implementations
    (`loss._target_`, named by `loss.name`) never count, nor does a `*seed`
    key equal to the seed in every run (a null `loss.init_seed` takes the
    run's seed: it repeats it). A missing value
    (a key an optimizer does not have) is a value of its own. Runs that carry
    no param at all (a job that failed before logging any) are left out.

    Args:
        runs: one row per run (load_runs).

    Returns:
        Keys in the table's column order.

    >>> swept_keys(pd.DataFrame({"loss.b": [1, 10], "seed": [0, 1], "lr": [0.1, 0.1],
    ...                          "tracking.uri": ["a", "b"], "loss.a": [1, 1], "loss.init_seed": [0, 1]}))
    ['loss.b']
    """
    params = [c for c in runs.columns if _is_param(c)]
    logged = runs[params].notna().any(axis=1) if params else pd.Series(False, index=runs.index)
    rows = runs.loc[logged, params]
    return [key for key in params
            if key not in LR_KEYS and key != REPEAT_KEY and not key.startswith(BOOKKEEPING)
            and not key.endswith(IMPLEMENTATION)
            and len({_norm(v) for v in rows[key]}) > 1 and not _is_the_seed(rows, key)]


def group_keys(runs: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """The keys that split runs into groups and name them.

    The swept keys (swept_keys), less a group's option defaults: a key under
    `G.` that takes one value per value of a swept `G.name` (adam's `eps`
    beside gd's none, in an optimizer sweep) follows from the choice and
    names nothing. Choices (`G.name`) come first. When no key varies, the
    one group is named by DEFAULT_KEYS (`loss.name`, `optimizer.name`).

    Args:
        runs: one row per run.
        exclude: keys that never split: those an Optuna search sampled from
            a range (every trial its own value; they are the search's axes,
            not its groups).

    >>> group_keys(pd.DataFrame({"optimizer.name": ["momentum", "momentum", "nesterov"],
    ...                          "optimizer.momentum": [0.5, 0.9, 0.9]}))
    ['optimizer.name', 'optimizer.momentum']
    >>> group_keys(pd.DataFrame({"loss.name": ["quadratic"], "optimizer.name": ["gd"]}))
    ['loss.name', 'optimizer.name']
    """
    swept = [k for k in swept_keys(runs) if k not in exclude]
    choices = {k.split(".")[0]: k for k in swept if k.count(".") == 1 and k.endswith(".name")}
    keys = [k for k in swept if k in choices.values()]
    for key in swept:
        choice = choices.get(key.split(".")[0])
        if key in keys or (choice is not None and _follows(runs, key, choice)):
            continue
        keys.append(key)
    return keys or [k for k in DEFAULT_KEYS if k in runs.columns]


def label(values: Mapping[str, object]) -> str:
    """A group's name from its key values, as a user would write the overrides.

    `G.name` shows as `G`, lists compactly, floats as their shortest exact
    repr (so two different values never print alike).

    >>> label({"optimizer.name": "adam", "loss.eigenvalues": "[1.0, 100.0]", "optimizer.eps": 1e-08})
    'optimizer=adam, loss.eigenvalues=[1,100], optimizer.eps=1e-08'
    """
    return ", ".join(f"{_key_text(k)}={_value_text(v)}" for k, v in values.items())


def with_groups(runs: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """A copy of `runs` with the column GROUP: each run's group label.

    Args:
        runs: one row per run.
        keys: the keys to split by (default: group_keys(runs)). Give them to
            label several tables alike (the sweeps of a comparison).

    Returns:
        The copy; GROUP is an ordered categorical whose order sorts groups by
        their key values (numbers as numbers, lists element by element), so
        groupby and sort_values keep that order.

    >>> with_groups(pd.DataFrame({"loss.b": [10, 2, 10]}))["group"].tolist()
    ['loss.b=10', 'loss.b=2', 'loss.b=10']
    >>> list(with_groups(pd.DataFrame({"loss.b": [10, 2, 10]}))["group"].cat.categories)
    ['loss.b=2', 'loss.b=10']
    """
    keys = group_keys(runs) if keys is None else list(keys)
    values = [tuple(_norm(v) for v in row) for row in runs[keys].itertuples(index=False, name=None)]
    order = sorted(set(values), key=lambda t: tuple(_sort_key(v) for v in t))
    names = {t: label(dict(zip(keys, t))) for t in order}
    out = runs.copy()
    out[GROUP] = pd.Categorical([names[t] for t in values], categories=[names[t] for t in order],
                                ordered=True)
    return out


def monitor(runs: pd.DataFrame) -> tuple[str, str]:
    """The metric a sweep is judged by, as Keras callbacks name it: (column, mode).

    `val_accuracy` (mode "max") where runs have one (a classifier: what it is
    for; its val_loss keeps growing as an overfit net grows confident on the
    points it gets wrong, while its accuracy holds), else `val_loss` ("min",
    a regression), else `final_loss` ("min"): a validation metric, where there
    is one, is what a learning rate is chosen for.

    >>> monitor(pd.DataFrame({"final_loss": [1.0], "val_loss": [0.3], "val_accuracy": [0.9]}))
    ('val_accuracy', 'max')
    >>> monitor(pd.DataFrame({"final_loss": [1.0], "val_loss": [0.3], "val_accuracy": [None]}))
    ('val_loss', 'min')
    """
    for column, mode in (("val_accuracy", "max"), ("val_loss", "min")):
        if column in runs.columns and runs[column].notna().any():
            return column, mode
    return "final_loss", "min"


def aggregate(runs: pd.DataFrame, metric: str = "final_loss") -> pd.DataFrame:
    """One row per (group, learning rate): its runs (the seeds, or any repeats) summarized.

    A diverged run's metric (its last finite value, e.g. 2.6e13) is no
    result: the statistics cover the runs that did not diverge, and
    divergence is counted apart. Runs without a descent result (failed,
    killed, running) are counted in `failed` and nothing else. A pruned run
    (successive halving, gdexp.core.pruning) stopped before its budget: it is
    counted in `pruned` and nothing else, its cell is not `stable` (its
    stability past the prune step is unknown), and the statistics are the
    finished runs'.

    Args:
        runs: one row per run, with or without GROUP (with_groups adds it).
        metric: the column summarized.

    Returns:
        Columns GROUP, lr, runs, failed, diverged (runs that diverged),
        diverged_fraction (of the runs with a result), diverged_step_min,
        diverged_step_max, {metric}_mean, {metric}_std (ddof=1: NaN for one
        run), {metric}_min, {metric}_max, {metric}_count (runs in the
        statistics), never_moved (runs that stopped at step 0: a stationary
        start), steps_to_best_mean (where the runs have steps_to_best),
        stable (at least one finished result, no run diverged, none pruned),
        pruned (runs pruned), pruned_step (the latest step a run of the cell
        was pruned at). Sorted by group order, then lr.

    >>> cells = aggregate(pd.DataFrame({
    ...     "seed": [0, 1, 2], "lr": [0.1, 0.1, 0.1], "optimizer.name": "gd",
    ...     "status": ["converged", "converged", "diverged"], "diverged": [False, False, True],
    ...     "diverged_step": [None, None, 7], "final_loss": [1.0, 3.0, 1e13]}))
    >>> cells[["runs", "diverged", "final_loss_mean", "final_loss_count", "stable"]].values.tolist()
    [[3, 1, 2.0, 2, False]]
    """
    runs = runs if GROUP in runs.columns else with_groups(runs)
    runs = runs[runs["lr"].notna()]
    result = runs["status"].isin(DESCENT_STATUSES)
    diverged = result & runs["diverged"].astype(bool)
    pruned = runs["status"] == PRUNED
    value = pd.to_numeric(runs[metric], errors="coerce").where(result & ~diverged & ~pruned)
    pruned_step = pd.to_numeric(runs["pruned_step"], errors="coerce").where(pruned) \
        if "pruned_step" in runs.columns else pd.Series(np.nan, index=runs.index)
    step = pd.to_numeric(runs["diverged_step"], errors="coerce").where(diverged)
    # A run that stopped at step 0 (a stationary start, or one at a kink) never moved.
    moved = pd.to_numeric(runs["iterations"], errors="coerce") > 0 if "iterations" in runs.columns else True
    frame = pd.DataFrame({GROUP: runs[GROUP], "lr": runs["lr"], "result": result, "diverged": diverged,
                          "value": value, "step": step, "pruned": pruned, "pruned_step": pruned_step,
                          "never_moved": result & ~diverged & ~moved})
    speed = "steps_to_best" in runs.columns
    if speed:
        frame["speed"] = pd.to_numeric(runs["steps_to_best"], errors="coerce").where(result & ~diverged & ~pruned)
    cells = frame.groupby([GROUP, "lr"], observed=True, sort=True)
    out = pd.DataFrame({
        "runs": cells.size(),
        "failed": cells["result"].size() - cells["result"].sum(),
        "diverged": cells["diverged"].sum(),
        "diverged_step_min": cells["step"].min(),
        "diverged_step_max": cells["step"].max(),
        f"{metric}_mean": cells["value"].mean(),
        f"{metric}_std": cells["value"].std(),
        f"{metric}_min": cells["value"].min(),
        f"{metric}_max": cells["value"].max(),
        f"{metric}_count": cells["value"].count(),
        "never_moved": cells["never_moved"].sum(),
        **({"steps_to_best_mean": cells["speed"].mean()} if speed else {}),
        "pruned": cells["pruned"].sum(),
        "pruned_step": cells["pruned_step"].max(),
    }).reset_index()
    with_result = out["runs"] - out["failed"]
    out.insert(5, "diverged_fraction", out["diverged"] / with_result.where(with_result > 0))
    out["stable"] = (with_result - out["pruned"] > 0) & (out["diverged"] == 0) & (out["pruned"] == 0)
    out = out[[c for c in out.columns if c not in ("pruned", "pruned_step")] + ["pruned", "pruned_step"]]
    for column in ("runs", "failed", "diverged", f"{metric}_count", "never_moved", "pruned"):
        out[column] = out[column].astype(int)
    return out


def answers(runs: pd.DataFrame, metric: str = "final_loss", mode: str = "min", rtol: float = 1e-6) -> pd.DataFrame:
    """Each group's answer to the sweep: its best learning rates and its largest stable one.

    - best_lr_low, best_lr_high: the smallest and largest learning rate as good as the
      best, among those where no run diverged. Without seeds (fewer than 3 runs per
      learning rate): those whose mean `metric` ties with the best within `rtol`
      (gdexp.results.ties.tied). With seeds: those not significantly worse than the
      best at 5%, by a one-sided paired t-test over the seeds (ties.worse_p_value).
    - best_lr: among the learning rates tied with the best value, the fastest: the
      fewest mean `steps_to_best` (steps until the loss settled within rtol of its
      final value); the smaller learning rate where those are equal or missing.
      Learning rates whose runs never moved (stopped at step 0) are left out while
      any other learning rate has a result.
    - max_stable_lr: the largest learning rate where no run (no seed) diverged.
    - pruned runs (successive halving) answer neither: a pruned learning
      rate is not stable (its stability past its prune step is unknown) and
      never best; the answers are taken among the runs that finished.
    - min_diverged_lr: the smallest where one did. Between the two lies the
      stability limit the grid resolves (a method whose stable set is not an
      interval can have min_diverged_lr < max_stable_lr).
    - best_lr_at_edge: best_lr is the grid's smallest or largest learning rate (the
      best may lie beyond: extend the grid); max_stable_lr_at_edge: max_stable_lr is
      the grid's largest (the limit lies beyond it; at the smallest, the limit is
      bracketed by the next point, which diverged).

    Args:
        runs: one row per run, with or without GROUP.
        metric, mode: the column compared and "min" or "max" (see monitor()).
        rtol: the relative tolerance of a tie (summary.rtol).

    Returns:
        One row per group, in group order: GROUP, best_lr, best_value (the
        mean metric there), best_lr_low, best_lr_high, best_lr_at_edge,
        max_stable_lr, max_stable_lr_at_edge, min_diverged_lr (NaN where
        there is none), lrs (distinct learning rates), runs, diverged,
        failed, never_moved, repeats (the most runs at one learning rate),
        tested (the range came from the paired test over seeds), pruned
        (runs pruned), pruned_above (pruned learning rates above
        max_stable_lr: the stability limit may lie beyond it, unknown).

    Raises:
        ValueError: mode is neither "min" nor "max".
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
    cells = aggregate(runs, metric)
    grouped = runs if GROUP in runs.columns else with_groups(runs)
    rows = []
    for group, part in cells.groupby(GROUP, observed=True, sort=True):
        stable = part[part["stable"] & part[f"{metric}_mean"].notna()]
        moved = stable[stable["never_moved"] < stable["runs"] - stable["failed"]]
        stable = moved if len(moved) else stable
        best_lr = best_value = low = high = math.nan
        tested = False
        if len(stable):
            means = stable[f"{metric}_mean"]
            best_value = float(means.min() if mode == "min" else means.max())
            ties = stable[tied(means, best_value, rtol)]
            speed = ties["steps_to_best_mean"] if "steps_to_best_mean" in ties.columns else None
            order = ties.assign(_speed=np.inf if speed is None else speed.fillna(np.inf)).sort_values(
                ["_speed", "lr"], kind="stable")
            best_lr = float(order["lr"].iloc[0])
            low, high = float(ties["lr"].min()), float(ties["lr"].max())
            seeds = _seed_table(grouped[grouped[GROUP] == group], metric, stable["lr"])
            if seeds is not None:
                good = [lr for lr in seeds.columns
                        if lr == best_lr or worse_p_value(seeds[lr], seeds[best_lr], mode) >= ALPHA]
                low, high, tested = float(min(good)), float(max(good)), True
        grid = part["lr"]
        max_stable = float(part.loc[part["stable"], "lr"].max())
        rows.append({
            GROUP: group, "best_lr": best_lr, "best_value": best_value,
            "best_lr_low": low, "best_lr_high": high,
            "best_lr_at_edge": bool(best_lr in (grid.min(), grid.max())) if np.isfinite(best_lr) else False,
            "max_stable_lr": max_stable,
            "max_stable_lr_at_edge": bool(max_stable == grid.max()) if np.isfinite(max_stable) else False,
            "min_diverged_lr": float(part.loc[part["diverged"] > 0, "lr"].min()),
            "lrs": len(part), "runs": int(part["runs"].sum()), "diverged": int(part["diverged"].sum()),
            "failed": int(part["failed"].sum()), "never_moved": int(part["never_moved"].sum()),
            "repeats": int(part["runs"].max()), "tested": tested,
            "pruned": int(part["pruned"].sum()),
            "pruned_above": int(((part["pruned"] > 0) & ~(part["lr"] <= max_stable)).sum()),
        })
    out = pd.DataFrame(rows, columns=[GROUP, "best_lr", "best_value", "best_lr_low", "best_lr_high",
                                      "best_lr_at_edge", "max_stable_lr", "max_stable_lr_at_edge",
                                      "min_diverged_lr", "lrs", "runs", "diverged", "failed", "never_moved",
                                      "repeats", "tested", "pruned", "pruned_above"])
    out[GROUP] = pd.Categorical(out[GROUP], categories=cells[GROUP].cat.categories, ordered=True)
    return out


def _seed_table(runs: pd.DataFrame, metric: str, lrs) -> pd.DataFrame | None:
    """One group's metric as (seed x lr) over the seeds every given lr ran with, or None where
    those are fewer than MIN_SEEDS (no paired test then)."""
    if REPEAT_KEY not in runs.columns:
        return None
    done = runs[runs["status"].isin(DESCENT_STATUSES) & runs["lr"].isin(list(lrs))]
    if done.empty or done.groupby("lr")[REPEAT_KEY].size().max() < MIN_SEEDS:
        return None
    table = done.pivot_table(index=REPEAT_KEY, columns="lr", values=metric, aggfunc="mean").dropna()
    return table if len(table) >= MIN_SEEDS else None


def _is_param(column: str) -> bool:
    return "." in column or column in TOP_LEVEL_PARAMS


def _norm(value):
    """A hashable value with every missing value alike (None, NaN, pd.NA)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_the_seed(rows: pd.DataFrame, key: str) -> bool:
    """Whether a `*seed` key of a section took the run's seed (a null `loss.init_seed` does,
    gdexp.specs.run_spec.plan): equal to `seed` in every run, it repeats the seed and splits nothing."""
    if not key.endswith("seed") or REPEAT_KEY not in rows.columns:
        return False
    pairs = [(_norm(v), _norm(s)) for v, s in zip(rows[key], rows[REPEAT_KEY])]
    return all(v == s for v, s in pairs)


def _follows(runs: pd.DataFrame, key: str, choice: str) -> bool:
    """Whether `key` takes one value for each value of `choice` (an option's default)."""
    pairs = {(_norm(c), _norm(v)) for c, v in zip(runs[choice], runs[key])}
    return len(pairs) == len({c for c, _ in pairs})


def _key_text(key: str) -> str:
    return key[: -len(".name")] if key.count(".") == 1 and key.endswith(".name") else key


def _value_text(value) -> str:
    value = _norm(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return number_text(value)
    items = _list(value)
    if items is not None:
        return list_text(items)
    return str(value)


def _list(value) -> list | None:
    """A logged list (MLflow keeps lists as JSON strings), or None."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


def _sort_key(value) -> tuple:
    """Numbers before text before missing; numbers by value, lists element by element."""
    if value is None:
        return (3,)
    if isinstance(value, (bool, int, float)):
        return (0, float(value))
    items = _list(value)
    if items is not None and all(isinstance(v, (int, float)) for v in items):
        return (1, tuple(float(v) for v in items))
    return (2, str(value))
