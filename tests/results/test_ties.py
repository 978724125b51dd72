"""gdexp.results.ties and the answers built on it: ties within summary.rtol broken by speed,
the range of learning rates as good as the best (paired test over seeds), grid-edge flags."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy import stats

from gdexp.results.groups import answers
from gdexp.results.summary import summarize
from gdexp.results.ties import paired, tied, worse_p_value


def table(lr, final_loss, steps_to_best=None, seed=None, status=None, iterations=None) -> pd.DataFrame:
    n = len(lr)
    status = status or ["converged"] * n
    return pd.DataFrame({
        "run_name": [f"r{i}" for i in range(n)], "lr": lr, "optimizer.lr": lr, "status": status,
        "diverged": [s == "diverged" for s in status], "diverged_step": [None] * n, "final_loss": final_loss,
        "iterations": iterations or [100] * n, "steps_to_best": steps_to_best or [50] * n,
        "loss.name": "quadratic", "optimizer.name": "gd", "seed": seed or [0] * n})


def test_values_within_rtol_tie_and_the_fastest_of_them_is_best_lr():
    # the 12th digit decides nothing; 0.1 reached the value in 12 steps, the others slower
    runs = table([0.001, 0.01, 0.1, 0.5, 1.0], [0.5, 0.0091056 + 3e-13, 0.0091056 + 1e-12, 0.0091056, 7.0],
                 steps_to_best=[1000, 900, 12, 30, 5], status=["max_iters"] + ["converged"] * 3 + ["diverged"])
    a = answers(runs).iloc[0]
    assert (a["best_lr"], a["best_lr_low"], a["best_lr_high"]) == (0.1, 0.01, 0.5)
    assert not a["best_lr_at_edge"] and not a["max_stable_lr_at_edge"] and not a["tested"]
    s = summarize(runs)
    assert "any lr in [0.01, 0.5] reaches final_loss 0.0091056 (within summary.rtol=1e-06); fastest: 0.1" in s.text()
    # a larger rtol ties more; rtol 0 ties nothing but exact equals
    assert answers(runs, rtol=0.99).iloc[0]["best_lr_low"] == 0.001
    assert answers(runs, rtol=0.0).iloc[0][["best_lr", "best_lr_low", "best_lr_high"]].tolist() == [0.5, 0.5, 0.5]


def test_a_tie_in_speed_too_goes_to_the_smaller_lr_and_a_column_of_steps_is_optional():
    runs = table([0.1, 0.2, 0.3], [1.0, 1.0, 1.0], steps_to_best=[7, 7, 9])
    assert answers(runs).iloc[0]["best_lr"] == 0.1
    assert answers(runs.drop(columns="steps_to_best")).iloc[0]["best_lr"] == 0.1


@pytest.mark.parametrize("values, best_edge, stable_edge", [
    ([3.0, 2.0, 1.0], True, True),         # best and stable at the top
    ([1.0, 2.0, 3.0], True, True),         # best at the bottom, stable at the top
    ([2.0, 1.0, 3.0], False, True),
])
def test_answers_on_the_grids_edge_are_flagged(values, best_edge, stable_edge):
    a = answers(table([0.1, 0.2, 0.3], values)).iloc[0]
    assert (a["best_lr_at_edge"], a["max_stable_lr_at_edge"]) == (best_edge, stable_edge)
    runs = table([0.1, 0.2, 0.3, 0.4], values + [np.nan], status=["converged"] * 3 + ["diverged"])
    a = answers(runs).iloc[0]
    assert a["max_stable_lr_at_edge"] == False  # noqa: E712 (numpy bool)
    text = summarize(runs).text()
    # the diverged 0.4 is the grid's top now: only a best at 0.1 is at its edge
    assert ("best_lr at the grid's edge: extend the grid" in text) == (values.index(min(values)) == 0)


def test_with_seeds_the_range_is_what_a_one_sided_paired_test_does_not_call_worse():
    rng = np.random.default_rng(3)
    seeds = np.arange(6)
    base = 1 + rng.normal(0, 0.1, size=6)  # each seed's own level, shared by every lr (paired)
    worse_each_seed = base + 0.01 + rng.normal(0, 0.001, size=6)      # always a little worse: significant
    noisy = base + rng.normal(0, 0.01, size=6)                        # as good, up to noise
    lrs = {0.01: worse_each_seed, 0.02: noisy, 0.03: base, 0.04: base + 0.5}
    runs = table([lr for lr in lrs for _ in seeds], np.concatenate(list(lrs.values())).tolist(),
                 seed=[int(s) for _ in lrs for s in seeds])
    a = answers(runs).iloc[0]
    assert a["tested"] and a["best_lr"] in (0.02, 0.03)
    best = lrs[a["best_lr"]]
    expected = [lr for lr, v in lrs.items() if lr == a["best_lr"]
                or stats.ttest_rel(v, best, alternative="greater").pvalue >= 0.05]
    assert (a["best_lr_low"], a["best_lr_high"]) == (min(expected), max(expected)) == (0.02, 0.03)
    assert "is not significantly worse than the best mean final_loss" in summarize(runs).text()


def test_the_paired_test_helpers():
    assert tied([1.0, 1.0 + 1e-7, 1.1], 1.0, 1e-6).tolist() == [True, True, False]
    assert worse_p_value([1, 1, 1], [1, 1, 1]) == 1.0
    assert worse_p_value([2, 2, 2], [1, 1, 1]) == 0.0 and worse_p_value([2, 2, 2], [1, 1, 1], "max") == 1.0
    a, b = [1.0, 2.5, 3.1, 4.2], [0.7, 2.4, 2.5, 4.0]
    r = paired(a, b)
    low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert r["diff"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
    assert r["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue) and r["n"] == 4


def test_the_tie_on_linear_regression_end_to_end(gdexp, store):
    code, out, err = gdexp("-m", "loss=linear_regression", "optimizer.lr=0.001,0.0046,0.01,0.046,0.1,0.46,1")
    assert code == 0, err
    assert "best_lr=0.46, max_stable_lr=0.46, min_diverged_lr=1" in out
    assert "any lr in [0.01, 0.46] reaches final_loss 0.00910558 (within summary.rtol=1e-06); fastest: 0.46" in out
    cl = MlflowClient(store)
    parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0]
    a = pd.read_csv(cl.download_artifacts(parent.info.run_id, "answers.csv")).iloc[0]
    assert (a["best_lr"], a["best_lr_low"], a["best_lr_high"]) == (0.46, 0.01, 0.46)
    assert not a["best_lr_at_edge"] and not a["max_stable_lr_at_edge"]
    children = {r.data.params["optimizer.lr"]: r.data.metrics for r in cl.search_runs(["1"])
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert children["0.46"]["steps_to_best"] < children["0.1"]["steps_to_best"] < children["0.046"]["steps_to_best"]
    # a coarser tolerance from the command line ties 0.0046 too
    code, out, err = gdexp("-m", "loss=linear_regression", "optimizer.lr=0.0046,0.46", "summary.rtol=1e-4")
    assert code == 0, err
    assert "any lr in [0.0046, 0.46] reaches" in out and "best_lr and max_stable_lr at the grid's edge" in out


def test_summary_rtol_out_of_range_is_one_line_exit_2(gdexp, store):
    code, out, err = gdexp("loss=booth", "summary.rtol=-1")
    assert code == 2 and "summary.rtol=-1" in err
