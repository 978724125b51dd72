"""The report's answers: each group's own optimizer's theory lines, tie ranges and grid-edge flags,
and the paired differences over seeds between groups (scipy's paired t-test as the reference)."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cli_runner import run_cli, store_in
from report_pages import table
from gdexp.commands.report import main as report

# Mini-batches make the seeds matter; two optimizers make two groups.
SWEEP = ("-m", "loss=linear_regression", "loss.batch_size=10", "optimizer=gd,momentum", "optimizer.lr=0.01,0.05",
         "seed=0,1,2,3", "stopping.maxiter=60", "stopping.gtol=0")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("answers")
    with store_in(folder) as uri:
        assert run_cli(*SWEEP) == 0
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert report([]) == 0
        import gdexp as api

        runs = api.load_runs(tracking_uri=uri)
        (md,) = list(folder.glob("reports/*/report.md"))
        yield runs, md.read_text()


def test_paired_differences_between_groups_match_scipys_paired_t_test(built):
    runs, md = built
    rows = table(md, "## Paired differences over seeds")
    assert len(rows) == 1
    row = rows[0]
    lr_a = float(row["first"].split("(lr ")[1].rstrip(")"))
    lr_b = float(row["second"].split("(lr ")[1].rstrip(")"))
    a = runs[(runs["optimizer.name"] == "gd") & (runs["lr"] == lr_a)].sort_values("seed")["final_loss"].to_numpy()
    b = runs[(runs["optimizer.name"] == "momentum") & (runs["lr"] == lr_b)].sort_values("seed")["final_loss"].to_numpy()
    t = stats.ttest_rel(a, b)
    low, high = t.confidence_interval(0.95)
    assert row["seeds"] == "4"
    assert float(row["mean difference"]) == pytest.approx(np.mean(a - b), rel=1e-5)
    assert row["95% interval"] == f"[{low:.6g}, {high:.6g}]"
    assert float(row["p-value"]) == pytest.approx(t.pvalue, rel=1e-5)


def test_theory_lines_are_labelled_with_each_groups_optimizer(built):
    _, md = built
    assert "`lr_max_stable = gd: 2/\u03bb_max; momentum: 2(1+\u03b2)/((1-d)\u03bb_max)`" in md
    runs, _ = built
    m = runs[runs["optimizer.name"] == "momentum"]["lr_max_stable"].iloc[0]
    g = runs[runs["optimizer.name"] == "gd"]["lr_max_stable"].iloc[0]
    assert m == pytest.approx(g * 1.9)  # 2(1 + 0.9)/lambda_max against 2/lambda_max


def test_answers_at_the_grids_edge_say_so(built):
    _, md = built
    lines = [line for line in md.splitlines() if line.startswith("- `optimizer=") and "best_lr=" in line]
    assert len(lines) == 2
    assert all("(at the grid's edge: extend the grid), max_stable_lr=0.05 (the largest tried: the limit lies above the grid; at the grid's edge: "
               "extend the grid)" in line for line in lines)
