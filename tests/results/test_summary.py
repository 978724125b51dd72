"""The sweep summary (gdexp.results.summary): groups as columns, answers per group on the aggregate
over seeds, the parent run's metrics and CSV files, load_runs(aggregate=True); numbers in one format."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.utils.validation import path_not_unique, validate_param_and_metric_name

from gdexp.results.groups import GROUP
from gdexp.results.summary import metric_names, number_column, result_column, summarize

# Issue 9 item 13: lr 0.1 diverged on [1,100] only; seeds repeat every setting (the quadratic
# ignores them, so every seed of a setting gives the same curve).
CONDITIONING = ("-m", "loss=quadratic", "loss.eigenvalues=[1,10],[1,100]", "optimizer.lr=0.01,0.1",
                "stopping.maxiter=300")


def runs(**columns) -> pd.DataFrame:
    """A load_runs-style table; what a test does not set: one converged run per row."""
    n = len(next(iter(columns.values())))
    base = {"run_name": [f"r{i}" for i in range(n)], "lr": [0.1] * n, "status": ["converged"] * n,
            "diverged_step": [None] * n, "final_loss": [1.0] * n, "iterations": [10] * n,
            "loss.name": ["quadratic"] * n, "optimizer.name": ["gd"] * n, "seed": [0] * n}
    base.update(columns)
    base["diverged"] = [s == "diverged" for s in base["status"]]
    base.setdefault("optimizer.lr", base["lr"])
    return pd.DataFrame(base)


@pytest.mark.parametrize("values, text", [
    ([1000, 175, 3], ["1000", "175", "3"]),                            # whole numbers: integers
    ([0.01, 0.1, 1.0, None], ["0.01", "0.1", "1", ""]),                # in [1e-3, 1e5): fixed, 6 digits
    ([4803012855.0, 2.65721e7], ["4.8030e+09", "2.6572e+07"]),         # issue 9 item 19: one format
    ([9.31878e-10, 0.5], ["9.3188e-10", "5.0000e-01"]),
    ([1e7, 2e7], ["1.0000e+07", "2.0000e+07"]),                        # whole, but too long to read
    ([math.inf, 1.5], ["inf", "1.5"]),
])
def test_a_number_column_has_one_format(values, text):
    assert number_column(values) == text


def test_a_diverged_run_reads_diverged_at_its_step_never_its_last_loss():
    table = runs(status=["converged", "diverged"], final_loss=[1e-3, 2.6e13], diverged_step=[None, 4])
    assert result_column(table, "final_loss") == ["0.001", "diverged (step 4)"]
    assert result_column(table, "final_loss", mark=False) == ["0.001", ""]


def test_metric_names_are_valid_mlflow_keys_and_distinct():
    labels = ["optimizer=adam, loss.eigenvalues=[1,100]", "optimizer=adam, loss.eigenvalues=[1,10]",
              "loss.data=runs/a b.csv", "loss.data=runs/a_b.csv", "loss.x=-0.5", "init=null"]
    names = metric_names(pd.DataFrame({GROUP: labels}))
    keys = [f"max_stable_lr{names[g]}" for g in labels]
    assert keys[0] == "max_stable_lr/optimizer-adam loss.eigenvalues-1_100"
    assert len(set(keys)) == len(keys)  # "a b" and "a_b" write alike: the second gets -2
    assert keys[3] == "max_stable_lr/loss.data-runs_a_b.csv-2"
    for key in keys:
        assert validate_param_and_metric_name(key) and not path_not_unique(key), key
        assert len(key) <= 250
    assert metric_names(pd.DataFrame({GROUP: ["loss=quadratic, optimizer=gd"]})) == {
        "loss=quadratic, optimizer=gd": ""}


def test_seeds_aggregate_and_a_learning_rate_is_stable_only_when_no_seed_diverged():
    table = runs(lr=[0.1] * 3 + [1.0] * 3, seed=[0, 1, 2] * 2,
                 status=["converged", "max_iters", "converged", "converged", "diverged", "converged"],
                 diverged_step=[None, None, None, None, 7, None], final_loss=[1.0, 2.0, 6.0, 0.1, 2.6e13, 0.3],
                 **{"loss.init_seed": [0, 1, 2] * 2})  # a null init_seed takes the run's seed: no group
    s = summarize(table)
    assert s.repeats and s.keys == [] and len(s.answers) == 1
    assert s.metrics() == {"runs": 6.0, "diverged": 1.0, "failed": 0.0, "best_lr": 0.1, "max_stable_lr": 0.1}
    lines = s.text().splitlines()
    assert lines[0].split() == ["lr", "runs", "diverged", "final_loss", "mean", "final_loss", "std", "final_loss",
                                "min", "final_loss", "max", "final_loss", "count"]
    assert lines[1].split() == ["0.1", "3", "0/3", "3", "2.64575", "1", "6", "3"]
    assert lines[2].split() == ["1", "3", "1/3", "0.2", "0.141421", "0.1", "0.3", "2"]
    assert lines[3] == "runs=6, diverged=1, failed=0, best_lr=0.1, max_stable_lr=0.1, min_diverged_lr=1"
    assert "where no seed diverged" in lines[4]
    assert set(s.tables()) == {"summary.csv", "answers.csv", "aggregate.csv"}


def test_a_cell_where_every_seed_diverged_says_so_with_its_steps():
    table = runs(lr=[1.0, 1.0], seed=[0, 1], status=["diverged", "diverged"], diverged_step=[3, 5],
                 final_loss=[1e9, 1e12])
    assert "diverged (steps 3-5)" in summarize(table).cell_table()


def test_a_sweep_prints_groups_as_columns_and_logs_each_groups_answer(gdexp, store):
    code, out, err = gdexp(*CONDITIONING)
    assert code == 0, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["loss.eigenvalues", "lr"])
    rows = [line.split() for line in lines[header + 1: header + 5]]
    assert [r[:3] for r in rows] == [["[1,10]", "0.01", "max_iters"], ["[1,10]", "0.1", "converged"],
                                     ["[1,100]", "0.01", "max_iters"], ["[1,100]", "0.1", "diverged"]]
    assert rows[3][3:6] == ["diverged", "(step", "3)"]
    assert "runs=4, diverged=1, failed=0; 2 groups by loss.eigenvalues" in out
    assert "  loss.eigenvalues=[1,10]: best_lr=0.1, max_stable_lr=0.1\n" in out
    assert "  loss.eigenvalues=[1,100]: best_lr=0.01, max_stable_lr=0.01, min_diverged_lr=0.1\n" in out

    cl = MlflowClient(store)
    parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0]
    m = parent.data.metrics
    assert {k: m[k] for k in m if "lr" in k} == {
        "best_lr/loss.eigenvalues-1_10": 0.1, "max_stable_lr/loss.eigenvalues-1_10": 0.1,
        "best_lr/loss.eigenvalues-1_100": 0.01, "max_stable_lr/loss.eigenvalues-1_100": 0.01}
    files = {f.path for f in cl.list_artifacts(parent.info.run_id)}
    assert files == {"summary.csv", "answers.csv"}  # no aggregate.csv: nothing repeats
    answers = pd.read_csv(cl.download_artifacts(parent.info.run_id, "answers.csv"))
    assert answers["loss.eigenvalues"].tolist() == ["[1,10]", "[1,100]"]  # lists as typed
    assert answers[["best_lr", "max_stable_lr"]].values.tolist() == [[0.1, 0.1], [0.01, 0.01]]
    assert np.isnan(answers["min_diverged_lr"][0]) and answers["min_diverged_lr"][1] == 0.1
    summary = pd.read_csv(cl.download_artifacts(parent.info.run_id, "summary.csv"))
    assert summary.groupby("group")["lr"].apply(list).to_dict() == {
        "loss.eigenvalues=[1,10]": [0.01, 0.1], "loss.eigenvalues=[1,100]": [0.01, 0.1]}


def test_seeds_as_repeats_from_the_cli_to_load_runs_aggregate(gdexp, store):
    code, out, err = gdexp(*CONDITIONING, "seed=0,1,2")
    assert code == 0, err
    assert re.search(r"\[1,100\]\s+0\.1\s+3\s+3/3\s+diverged \(step 3\)", out), out
    assert re.search(r"\[1,10\]\s+0\.1\s+3\s+0/3\s+", out)
    assert "runs=12, diverged=3, failed=0; 2 groups by loss.eigenvalues" in out
    assert "where no seed diverged" in out

    import gdexp as api

    cells = api.load_runs(aggregate=True)
    assert list(cells.columns[:3]) == ["loss.eigenvalues", GROUP, "lr"]
    assert cells["runs"].tolist() == [3, 3, 3, 3] and cells["diverged"].tolist() == [0, 0, 0, 3]
    assert cells["diverged_fraction"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert cells["stable"].tolist() == [True, True, True, False]
    assert (cells["final_loss_std"][:3] == 0).all() and cells["final_loss_count"].tolist() == [3, 3, 3, 0]

    cl = MlflowClient(store)
    parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0]
    stored = pd.read_csv(cl.download_artifacts(parent.info.run_id, "aggregate.csv"))
    assert stored["final_loss_mean"].tolist() == pytest.approx(cells["final_loss_mean"].tolist(), nan_ok=True)
    assert parent.data.metrics["max_stable_lr/loss.eigenvalues-1_100"] == 0.01


def test_keys_a_search_sampled_never_split_groups():
    table = runs(lr=[0.01, 0.02, 0.03], **{"optimizer.momentum": [0.51, 0.73, 0.94]}, final_loss=[3.0, 1.0, 2.0])
    assert len(summarize(table).answers) == 3  # a grid over momentum: a group each
    s = summarize(table, searched=["optimizer.momentum"])
    assert s.keys == [] and s.metrics()["best_lr"] == 0.02
