"""gdexp.results.groups: groups named by what differs, repeats aggregated, each group's answer."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gdexp.results.groups import (GROUP, aggregate, answers, group_keys, label, monitor, swept_keys,
                                  with_groups)


def runs(**columns) -> pd.DataFrame:
    """A load_runs-style table: defaults for what a test does not set (one run per lr, all converged)."""
    n = len(next(iter(columns.values())))
    base = {"lr": [0.1] * n, "status": ["converged"] * n, "diverged": [False] * n,
            "diverged_step": [None] * n, "final_loss": [1.0] * n, "loss.name": ["quadratic"] * n,
            "optimizer.name": ["gd"] * n, "seed": [0] * n}
    base.update(columns)
    base["diverged"] = [s == "diverged" for s in base["status"]] if "status" in columns else base["diverged"]
    base.setdefault("optimizer.lr", base["lr"])
    return pd.DataFrame(base)


@pytest.mark.parametrize("table, swept, keys", [
    # The learning rate, the seed and where runs were recorded never count.
    (runs(lr=[0.1, 1.0], seed=[0, 1], **{"tracking.uri": ["a", "b"], "tracking.experiment": ["x", "y"]}),
     [], ["loss.name", "optimizer.name"]),
    # An optimizer sweep: each optimizer's own defaults follow from its name.
    (runs(**{"optimizer.name": ["gd", "adam", "momentum"], "optimizer.eps": [None, 1e-8, None],
             "optimizer.momentum": [None, None, 0.9]}),
     ["optimizer.name", "optimizer.eps", "optimizer.momentum"], ["optimizer.name"]),
    # A swept option value under a swept choice still names groups.
    (runs(**{"optimizer.name": ["momentum", "momentum", "nesterov"], "optimizer.momentum": [0.5, 0.9, 0.9]}),
     ["optimizer.name", "optimizer.momentum"], ["optimizer.name", "optimizer.momentum"]),
    # The conditioning sweep: a list param.
    (runs(**{"loss.eigenvalues": ["[1.0, 10.0]", "[1.0, 100.0]"]}), ["loss.eigenvalues"], ["loss.eigenvalues"]),
    # A top-level key (init) counts; keys under no group are params only when conf/config.yaml has them.
    (runs(init=["[0, 0]", None], final_loss=[1.0, 2.0]), ["init"], ["init"]),
])
def test_swept_and_group_keys(table, swept, keys):
    assert swept_keys(table) == swept
    assert group_keys(table) == keys


def test_a_run_without_params_does_not_make_every_key_swept():
    table = runs(**{"loss.name": ["quadratic", None], "optimizer.name": ["gd", None],
                    "status": ["converged", "failed"]})
    table.loc[1, ["seed", "optimizer.lr"]] = None
    assert swept_keys(table) == []


def test_searched_keys_can_be_left_out_of_the_groups():
    table = runs(**{"optimizer.momentum": [0.51, 0.73, 0.94]})
    assert group_keys(table) == ["optimizer.momentum"]
    assert group_keys(table, exclude=["optimizer.momentum"]) == ["loss.name", "optimizer.name"]


@pytest.mark.parametrize("values, text", [
    ({"optimizer.name": "adam"}, "optimizer=adam"),
    ({"loss.eigenvalues": "[1.0, 100.0]"}, "loss.eigenvalues=[1,100]"),
    ({"loss.rotate": True, "stopping.maxiter": 300}, "loss.rotate=true, stopping.maxiter=300"),
    ({"optimizer.momentum": 0.1 + 0.2}, "optimizer.momentum=0.30000000000000004"),  # never two alike
    ({"init": None}, "init=null"),
    ({"loss.data": "runs/a.csv"}, "loss.data=runs/a.csv"),
])
def test_labels_read_like_overrides(values, text):
    assert label(values) == text


def test_groups_are_ordered_by_value_not_by_text():
    table = runs(**{"loss.eigenvalues": ["[1.0, 100.0]", "[1.0, 2.0]", "[1.0, 10.0]"], "loss.b": [10, 2, 1]})
    grouped = with_groups(table, ["loss.eigenvalues"])
    assert list(grouped[GROUP].cat.categories) == ["loss.eigenvalues=[1,2]", "loss.eigenvalues=[1,10]",
                                                   "loss.eigenvalues=[1,100]"]
    assert list(with_groups(table, ["loss.b"])[GROUP].cat.categories) == ["loss.b=1", "loss.b=2", "loss.b=10"]


def _seeds() -> pd.DataFrame:
    """Two lrs x three seeds; at lr 1 one seed of three diverged (step 7)."""
    return runs(lr=[0.1] * 3 + [1.0] * 3, seed=[0, 1, 2] * 2,
                status=["converged", "max_iters", "converged", "converged", "diverged", "converged"],
                diverged_step=[None, None, None, None, 7, None],
                final_loss=[1.0, 2.0, 6.0, 0.1, 2.6e13, 0.3])


def test_aggregate_over_seeds():
    cells = aggregate(_seeds())
    assert cells["lr"].tolist() == [0.1, 1.0]
    first, second = cells.iloc[0], cells.iloc[1]
    assert (first["runs"], first["diverged"], first["final_loss_count"]) == (3, 0, 3)
    assert first["final_loss_mean"] == 3.0 and first["final_loss_std"] == pytest.approx(np.std([1, 2, 6], ddof=1))
    assert (first["final_loss_min"], first["final_loss_max"], first["stable"]) == (1.0, 6.0, True)
    # The diverged seed's last finite loss (2.6e13) is in no statistic.
    assert (second["runs"], second["diverged"], second["final_loss_count"]) == (3, 1, 2)
    assert second["final_loss_mean"] == pytest.approx(0.2) and second["final_loss_max"] == 0.3
    assert second["diverged_fraction"] == pytest.approx(1 / 3) and second["diverged_step_min"] == 7
    assert not second["stable"]


def test_best_and_max_stable_lr_need_every_seed_stable():
    (a,) = answers(_seeds()).to_dict("records")
    # lr 1 has the lower mean (0.2 < 3) but a seed diverged there: it is neither best nor stable.
    assert (a["best_lr"], a["best_value"], a["max_stable_lr"], a["min_diverged_lr"]) == (0.1, 3.0, 0.1, 1.0)
    assert (a["runs"], a["diverged"], a["repeats"], a["lrs"]) == (6, 1, 3, 2)


def test_failed_runs_count_apart_and_decide_nothing():
    table = runs(lr=[0.1, 1.0], status=["converged", "failed"], final_loss=[1.0, math.nan])
    cells = aggregate(table)
    assert cells["failed"].tolist() == [0, 1] and cells["stable"].tolist() == [True, False]
    (a,) = answers(table).to_dict("records")
    assert (a["max_stable_lr"], a["failed"]) == (0.1, 1) and math.isnan(a["min_diverged_lr"])


def test_every_lr_diverged_gives_no_answer_but_the_smallest_diverged():
    (a,) = answers(runs(lr=[0.1, 1.0], status=["diverged", "diverged"], diverged_step=[3, 1])).to_dict("records")
    assert math.isnan(a["best_lr"]) and math.isnan(a["max_stable_lr"]) and a["min_diverged_lr"] == 0.1


def test_ties_go_to_the_smaller_lr_and_max_mode_picks_the_highest():
    table = runs(lr=[0.1, 0.3, 1.0], final_loss=[0.5, 0.5, 0.7], val_accuracy=[0.8, 0.9, 0.85])
    assert answers(table)["best_lr"].item() == 0.1
    assert monitor(table) == ("val_accuracy", "max")
    assert answers(table, "val_accuracy", "max")["best_lr"].item() == 0.3
    with pytest.raises(ValueError, match="mode"):
        answers(table, mode="lowest")


def test_groups_of_a_conditioning_sweep_are_answered_apart():
    """Issue 9 item 13: lr 0.1 diverged on [1,100], so it is that group's answer to nothing."""
    table = runs(lr=[0.01, 0.1, 0.01, 0.1], status=["converged", "converged", "converged", "diverged"],
                 final_loss=[1e-3, 1e-9, 1e-2, 1e9], diverged_step=[None, None, None, 5],
                 **{"loss.eigenvalues": ["[1, 10]", "[1, 10]", "[1, 100]", "[1, 100]"]})
    out = answers(table)
    assert out[GROUP].astype(str).tolist() == ["loss.eigenvalues=[1,10]", "loss.eigenvalues=[1,100]"]
    assert out["best_lr"].tolist() == [0.1, 0.01] and out["max_stable_lr"].tolist() == [0.1, 0.01]
