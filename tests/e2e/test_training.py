"""Training as practitioners run it, end to end through the real CLI and a real SQLite store: an MLP
with validation metrics, a schedule's lr curve, mini-batches with seeds, sharpness, the report's
sharpness and batch-size sections, the named sweeps mlp_lr, batch_lr and edge_of_stability."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

import gdexp as api
from gdexp.core.losses.mlp import mlp


def runs_of(store):
    cl = MlflowClient(store)
    found = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    return cl, [r for r in found if r.data.tags.get("gdexp.sweep") != "true"]


def history(cl, run, key) -> pd.Series:
    points = cl.get_metric_history(run.info.run_id, key)
    return pd.Series({p.step: p.value for p in points}).sort_index()


def curve(cl, run) -> pd.DataFrame:
    return pd.read_parquet(cl.download_artifacts(run.info.run_id, "curve.parquet"))


def test_an_mlp_logs_validation_metrics_at_every_evaluation(gdexp, store):
    code, out, err = gdexp("loss=mlp", "loss.dataset=iris", "loss.hidden=[8]", "optimizer.lr=0.5",
                           "stopping.maxiter=60", "tracking.eval_every=20")
    assert code == 0, err
    cl, (run,) = runs_of(store)
    val_loss, val_accuracy = history(cl, run, "val_loss"), history(cl, run, "val_accuracy")
    assert val_loss.index.tolist() == val_accuracy.index.tolist() == [0, 20, 40, 60]
    assert val_loss.iloc[-1] < val_loss.iloc[0] and 0.8 <= val_accuracy.iloc[-1] <= 1.0
    c = curve(cl, run)
    assert c["val_loss"].dropna().tolist() == val_loss.tolist()
    # The last evaluation is the network's at its final parameters (result.json's x).
    with open(cl.download_artifacts(run.info.run_id, "result.json")) as f:
        x = np.array(json.load(f)["x"])
    metrics = mlp("iris", hidden=[8]).eval_metrics(x[None])
    assert metrics["val_loss"][0] == val_loss.iloc[-1] and metrics["val_accuracy"][0] == val_accuracy.iloc[-1]
    assert run.data.metrics["val_accuracy"] == val_accuracy.iloc[-1]


@pytest.mark.parametrize("schedule", [
    ["schedule=warmup_cosine", "schedule.warmup=10"],
    ["schedule=onecycle"],
    ["schedule=step", "schedule.step_size=7", "schedule.gamma=0.5"],
])
def test_a_schedules_lr_curve_in_mlflow_is_torchs(gdexp, store, schedule):
    torch = pytest.importorskip("torch", reason="torch.optim.lr_scheduler is the reference")
    from test_schedules import _torch_values

    steps = 60
    code, out, err = gdexp("loss=quadratic", "optimizer.lr=0.01", f"stopping.maxiter={steps}", "stopping.gtol=0",
                           *schedule)
    assert code == 0, err
    cl, (run,) = runs_of(store)
    lr = history(cl, run, "lr")
    name = schedule[0].split("=")[1]
    values = {kv.split("=")[0].split(".")[1]: float(kv.split("=")[1]) for kv in schedule[1:]}
    values = {k: int(v) if k in ("warmup", "step_size") else v for k, v in values.items()}
    reference = _torch_values(torch, name, values, 0.01, steps)["lr"]
    # Step s > 0 holds the rate of the update that made it (torch's lr before update s - 1); step 0
    # the first update's.
    assert lr.index.tolist() == list(range(steps + 1))
    np.testing.assert_allclose(lr.to_numpy()[1:], reference, rtol=1e-12, atol=0)
    assert lr[0] == lr[1]
    assert len(np.unique(reference)) > 2


def test_mini_batches_follow_the_seed_in_any_batch_composition(gdexp, store):
    base = ("loss=mlp", "loss.dataset=wine", "loss.hidden=[6]", "loss.batch_size=16", "stopping.maxiter=40",
            "tracking.eval_every=10")
    code, _, err = gdexp("-m", *base, "seed=0,1", "optimizer.lr=0.1,0.3")
    assert code == 0, err
    code, _, err = gdexp(*base, "seed=1", "optimizer.lr=0.3")  # alone
    assert code == 0, err
    cl, runs = runs_of(store)
    curves = {}
    for run in runs:
        key = (run.data.params["seed"], run.data.params["optimizer.lr"], run.data.tags.get("mlflow.parentRunId"))
        curves[key] = curve(cl, run)
    alone = next(c for k, c in curves.items() if k[2] is None)
    in_sweep = next(c for k, c in curves.items() if k[:2] == ("1", "0.3") and k[2] is not None)
    other_seed = next(c for k, c in curves.items() if k[:2] == ("0", "0.3"))
    assert np.array_equal(alone["loss"], in_sweep["loss"])  # bit for bit, alone or among 4 rows
    assert not np.array_equal(alone["loss"][1:], other_seed["loss"][1:])
    # The full training loss every eval_every steps; the mini-batch loss at every step.
    assert alone["train_loss"].notna().sum() == 5 and alone["loss"].notna().all()
    # The init follows the run's seed too (loss.init_seed null): the two seeds start apart.
    assert alone["loss"][0] != other_seed["loss"][0]


@pytest.mark.parametrize("rotate", ["false", "true"])
def test_sharpness_on_a_quadratic_is_lambda_max_at_every_logged_step(gdexp, store, rotate):
    code, _, err = gdexp("loss=quadratic", "loss.eigenvalues=[0.5,3,40]", f"loss.rotate={rotate}",
                         "optimizer.lr=0.02", "stopping.maxiter=60", "stopping.gtol=0",
                         "tracking.sharpness_every=5")
    assert code == 0, err
    cl, (run,) = runs_of(store)
    sharp, limit = history(cl, run, "sharpness"), history(cl, run, "2/lr")
    assert sharp.index.tolist() == list(range(0, 61, 5)) == limit.index.tolist()
    np.testing.assert_allclose(sharp.to_numpy(), 40.0, rtol=1e-6)
    assert (limit == 100.0).all()


def test_the_report_draws_sharpness_against_two_over_lr(gdexp, store, tmp_path):
    code, _, err = gdexp("-m", "loss=mlp", "loss.dataset=diabetes", "loss.hidden=[8]", "optimizer.lr=0.05,0.1",
                         "stopping.maxiter=200", "stopping.gtol=0", "tracking.sharpness_every=20")
    assert code == 0, err
    code, out, err = gdexp("report", "--out", str(tmp_path / "r"))
    assert code == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    section = md.split("## Sharpness and the edge of stability")[1].split("\n## ")[0]
    assert "![Sharpness against 2/lr, loss=mlp, optimizer=gd](fig-loss-mlp-optimizer-gd-sharpness.png)" in section
    assert (tmp_path / "r" / "fig-loss-mlp-optimizer-gd-sharpness.png").stat().st_size > 10_000
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| mlp-gd")]
    assert [r[1] for r in rows] == ["0.05", "0.1"] and [r[2] for r in rows] == ["40", "20"]
    html = (tmp_path / "r" / "report.html").read_text()
    assert 'id="plot-loss-mlp-optimizer-gd-sharpness"' in html and "lr=0.05: 2/lr" in html
    # No sharpness measured, no section.
    assert gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.1", "stopping.maxiter=30")[0] == 0
    assert gdexp("report", "--out", str(tmp_path / "b"))[0] == 0
    assert "Sharpness" not in (tmp_path / "b" / "report.md").read_text()


def test_mlp_lr_shows_where_training_diverges_and_the_best_val_accuracy(gdexp, store, tmp_path):
    code, out, err = gdexp("+sweep=mlp_lr", "optimizer.lr=0.1,1,100", "stopping.maxiter=30")
    assert code == 0, err
    assert "2 groups by optimizer" in out and "best_lr: the highest val_accuracy" in out
    table = api.load_runs()
    assert len(table) == 6 and set(table["loss.activation"]) == {"relu"}
    gd = table[table["optimizer"] == "gd"].set_index("lr")
    assert gd.loc[100.0, "status"] == "diverged" and not gd.loc[1.0, "diverged"]
    code, _, err = gdexp("report", "--out", str(tmp_path / "r"))
    assert code == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    assert "val accuracy against learning rate, by optimizer" in md
    assert "`optimizer=gd`: best_lr=" in md and "(val accuracy " in md and "min_diverged_lr=100" in md


def test_batch_lr_reports_lr_against_batch_size_beside_linear_scaling(gdexp, store, tmp_path):
    code, out, err = gdexp("+sweep=batch_lr", "loss.batch_size=32,128,null", "optimizer.lr=0.3,3,30",
                           "stopping.maxiter=40")
    assert code == 0, err
    assert "3 groups by loss.batch_size" in out and "loss.batch_size=null: best_lr=" in out
    code, _, err = gdexp("report", "--out", str(tmp_path / "r"))
    assert code == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    section = md.split("## Learning rate against batch size")[1].split("\n## ")[0]
    assert "linear scaling (Goyal et al. 2017)" in section and "![Learning rate against batch size]" in section
    rows = [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| all runs")]
    assert [r[1] for r in rows] == ["32", "128", "1437 (full batch)"]
    best_full = float(rows[-1][2])
    assert [float(r[4]) for r in rows] == pytest.approx([best_full * 32 / 1437, best_full * 128 / 1437, best_full],
                                                        rel=1e-3)  # the table's 4 digits
    assert (tmp_path / "r" / "fig-batch-size.png").exists()


def test_edge_of_stability_composes_and_runs_briefly(gdexp, store):
    code, out, err = gdexp("+sweep=edge_of_stability", "stopping.maxiter=100")
    assert code == 0, err
    table = api.load_runs()
    assert table["lr"].tolist() == [0.025, 0.04, 0.0666667] and (table["sharpness"] > 0).all()
    assert set(table["loss.dataset"]) == {"diabetes"} and set(table["loss.hidden"]) == {"[32,32]"}
