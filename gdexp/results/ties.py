"""When two learning rates' answers are the same: ties within a tolerance, and paired tests over seeds.

The ``summary`` config section (``summary.rtol``) lives here. numpy only at
import; scipy (installed with scikit-learn) is imported by the paired test.

- Two final values tie when they differ by at most ``rtol`` relative
  (|a - b| <= rtol max(|a|, |b|)): on linear regression every lr from
  0.0046 to 0.46 reaches 0.0091056 and differs only in the 12th digit.
- Among tied learning rates the fastest wins: the one whose loss settled
  within rtol of its final value in the fewest steps (``steps_to_best``,
  gdexp.core.result.Result.steps_to_best, logged per run).
- With three or more seeds per learning rate, a learning rate is as good as
  the best unless a one-sided paired t-test over the seeds (scipy.stats.ttest_rel,
  alternative "greater") says it is worse at level ALPHA.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from gdexp.core.params import NonNegative, check_section

# The paired test's level, and the fewest seeds it is run with.
ALPHA = 0.05
MIN_SEEDS = 3


@dataclass(frozen=True)
class SummaryConfig:
    """The ``summary`` config section: how a sweep's answers are read (defaults here).

    Attributes:
        rtol: two final values (loss, or the validation metric the summary uses) tie when
            they differ by at most rtol relative; also the tolerance of ``steps_to_best``.
    """

    rtol: NonNegative = 1e-6


def check_summary(section: dict) -> dict:
    """The summary section with every key known and in range (ConfigError otherwise).

    >>> check_summary({"rtol": -1})
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: summary.rtol=-1: must be finite and >= 0
    """
    return {**asdict(SummaryConfig()), **check_section("summary", SummaryConfig, section, "settings")}


def rtol_of(config: dict) -> float:
    """A run config's summary.rtol (the default where the section is missing)."""
    return float((config.get("summary") or {}).get("rtol", SummaryConfig.rtol))


def rtol_of_runs(runs) -> float:
    """The tie tolerance a sweep's runs were recorded with: their `summary.rtol` param (the largest,
    should they differ), else the default."""
    if "summary.rtol" not in getattr(runs, "columns", ()):
        return SummaryConfig.rtol
    logged = [float(v) for v in runs["summary.rtol"] if v is not None and v == v]
    return max(logged) if logged else SummaryConfig.rtol


def group_differences(runs, answered, metric: str, group: str = "group", seed: str = "seed"):
    """For each pair of groups, at their best learning rates, the paired difference of `metric`
    over the seeds both ran (first group minus second): see `paired`.

    Args:
        runs: one row per run with the group column, lr, status, seed and the metric.
        answered: gdexp.results.groups.answers (best_lr per group).

    Returns:
        A pandas DataFrame: group_a, lr_a, group_b, lr_b, n (paired seeds), diff, ci_low,
        ci_high, p_value; empty where fewer than two groups have a best_lr with 2+ seeds.
    """
    import pandas as pd

    columns = ["group_a", "lr_a", "group_b", "lr_b", "n", "diff", "ci_low", "ci_high", "p_value"]
    if seed not in runs.columns:
        return pd.DataFrame(columns=columns)
    best = {str(g): lr for g, lr in zip(answered[group], answered["best_lr"]) if lr == lr}
    values = {}
    for g, lr in best.items():
        at = runs[(runs[group].astype(str) == g) & (runs["lr"] == lr) & ~runs["diverged"].astype(bool)]
        values[g] = pd.to_numeric(at.set_index(seed)[metric], errors="coerce").dropna()
        values[g] = values[g][~values[g].index.duplicated()]
    rows = []
    names = list(values)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = values[a].index.intersection(values[b].index)
            if len(common) < 2:
                continue
            r = paired(values[a][common].to_numpy(), values[b][common].to_numpy())
            rows.append({"group_a": a, "lr_a": best[a], "group_b": b, "lr_b": best[b], **r})
    return pd.DataFrame(rows, columns=columns)


def tied(values, best: float, rtol: float) -> np.ndarray:
    """Which values tie with `best`: |v - best| <= rtol max(|v|, |best|) (exact equality at rtol 0).

    >>> tied([0.0091056, 0.00910560000001, 0.0092], 0.0091056, 1e-6).tolist()
    [True, True, False]
    """
    v = np.asarray(values, dtype=float)
    return np.abs(v - best) <= rtol * np.maximum(np.abs(v), abs(best))


def paired(a, b) -> dict:
    """The paired difference a - b over seeds: mean, its 95% interval (Student's t) and the
    two-sided p-value of a zero mean (scipy.stats.ttest_rel); nan where fewer than 2 pairs.

    >>> r = paired([1.0, 2.0, 3.0, 4.0], [0.5, 1.4, 2.6, 3.5])
    >>> round(r["diff"], 3), r["n"]
    (0.5, 4)
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    n = len(d)
    out = {"diff": float(d.mean()) if n else math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "p_value": math.nan, "n": n}
    if n < 2:
        return out
    from scipy import stats

    sem = float(d.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.975, n - 1)) * sem
    out.update(ci_low=out["diff"] - half, ci_high=out["diff"] + half)
    out["p_value"] = 1.0 if sem == 0 and out["diff"] == 0 else float(stats.ttest_rel(a, b).pvalue) if sem else 0.0
    return out


def worse_p_value(candidate, best, mode: str = "min") -> float:
    """One-sided paired test over seeds that `candidate` is worse than `best` (same seed order):
    its p-value (small = significantly worse); 1.0 where every difference is 0.

    Args:
        candidate, best: the metric of each seed, paired by position.
        mode: "min" (lower is better: worse = larger) or "max".
    """
    from scipy import stats

    a, b = np.asarray(candidate, dtype=float), np.asarray(best, dtype=float)
    d = a - b if mode == "min" else b - a
    if not np.any(d):
        return 1.0
    if np.all(d == d[0]):  # no spread: certain one way or the other
        return 0.0 if d[0] > 0 else 1.0
    return float(stats.ttest_rel(d, np.zeros_like(d), alternative="greater").pvalue)
