"""Issue 9, what runs record and say, each defect by its kind: params too long for MLflow (14),
curves that end in NaN (15), what a run prints and logs (16); and what the checks of CI found
(a report of every kind of loss, doctests importing gdexp's sweepers first).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_runner import runs_of
from mlflow import MlflowClient


# --- 14: params longer than MLflow keeps ----------------------------------------------------------
def test_params_too_long_for_mlflow_are_stand_ins_and_read_back_whole(gdexp, store):
    import gdexp as api
    from gdexp.results.text import list_text

    n = 1500
    eigenvalues = [1.0 + i / 100 for i in range(n)]
    center = [round(0.001 * i, 3) for i in range(n)]
    start = [1.25] * n  # (ones would be "[1,1,...]": short enough to be a param)
    lists = {"loss.eigenvalues": eigenvalues, "loss.center": center, "init": start}
    overrides = [f"{k}={json.dumps(v).replace(' ', '')}" for k, v in lists.items()]
    code, _, err = gdexp("loss=quadratic", *overrides, "optimizer.lr=0.001", "stopping.maxiter=5")
    assert code == 0, err
    code, _, err = gdexp("-m", "loss=quadratic", *overrides, "optimizer.lr=0.001,0.002", "stopping.maxiter=5")
    assert code == 0, err
    cl, children, _ = runs_of(store)
    runs = [r for r in cl.search_runs([e.experiment_id for e in cl.search_experiments()]) if "loss.center" in r.data.params]
    assert len(runs) == 3 and len(children) == 2
    for run in runs:
        assert max(len(v) for v in run.data.params.values()) <= 6000
        for key, value in lists.items():
            text = list_text(value)  # the typed form: [1,1.01,...]
            assert run.data.params[key].startswith(f"gdexp:too-long len={len(text)} sha256=")
    table = api.load_runs(experiment="gdexp")
    assert len(table) == 3
    for key, value in lists.items():
        assert [json.loads(v) for v in table[key]] == [value] * 3 and set(table[key]) == {list_text(value)}


# --- 15: a curve that ends in NaN -----------------------------------------------------------------
def test_curves_that_end_non_finite_keep_only_finite_points_in_mlflow(gdexp, store):
    """lr 1 on eigenvalues up to 100, no divergence threshold: the loss runs to inf, then NaN."""
    code, _, err = gdexp("loss=quadratic", "optimizer.lr=1.0", "stopping.divergence_factor=inf",
                         "stopping.maxiter=2000", "schedule=step", "schedule.step_size=1000", "schedule.gamma=0.9",
                         "tracking.sharpness_every=5")
    assert code == 0, err
    cl = MlflowClient(store)
    (run,) = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    assert run.data.tags["gdexp.status"] == "diverged"
    for key in ("loss", "grad_norm", "lr", "sharpness"):
        history = cl.get_metric_history(run.info.run_id, key)
        assert len(history) > 10, key
        assert all(abs(m.value) < 1e308 for m in history), key  # no nan, no inf (MLflow stores inf as 1.8e308)
    assert all(abs(v) < 1e308 for v in run.data.metrics.values())  # every latest value, as the UI's charts read them
    curve = pd.read_parquet(Path(cl.download_artifacts(run.info.run_id, "curve.parquet")))
    assert not curve["loss"].iloc[-5:].map(lambda v: abs(v) < 1e308).all()  # the file keeps every step


# --- 16: what a run says, and its log ---------------------------------------------------------------
LINE = re.compile(r"^booth-gd-lr=0\.01: (converged|max_iters) after \d+ steps, final loss \S+ \(run ([0-9a-f]{32})\)$")


def test_a_single_run_prints_its_line_and_where_to_look_and_logs_it(gdexp, store, tmp_path):
    code, out, err = gdexp("loss=booth", "optimizer.lr=0.01", "stopping.maxiter=50")
    assert code == 0, err
    lines = out.splitlines()
    match = LINE.match(lines[0])
    assert match, out
    run_id = match.group(2)
    assert f"Runs are in {store}, run {run_id}." in out and "mlflow ui --backend-store-uri" in out
    assert f"/runs/{run_id}" in out
    (log,) = (tmp_path / "outputs").glob("*/*/*.log")
    assert f"[gdexp] {lines[0]}" in log.read_text()


@pytest.mark.parametrize("launcher", ["gdexp", "basic"])
def test_every_job_of_a_sweep_logs_its_line_in_its_folder(gdexp, store, launcher):
    code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.02", "stopping.maxiter=50",
                           f"hydra/launcher={launcher}")
    assert code == 0, err
    cl, children, parents = runs_of(store)
    folder = Path(parents[0].data.tags["gdexp.sweep_dir"])
    logged = {}
    for n in ("0", "1"):
        (log,) = (folder / n).glob("*.log")
        (line,) = [line for line in log.read_text().splitlines() if line.startswith("[gdexp] ")]
        logged[line.split(": ", 1)[0].removeprefix("[gdexp] ")] = line
    assert sorted(logged) == sorted(r.info.run_name for r in children)
    for run in children:
        assert logged[run.info.run_name].endswith(f"(run {run.info.run_id})")


# --- reading back what every kind of loss recorded (found by .ci/base_install_check.sh) ---------------
def test_only_parameters_are_taken_for_path_coordinates(gdexp, store):
    """An MLP's curve.parquet has train_loss and train_accuracy columns, no parameters: its two
    measurements were drawn as a 2-D descent path, and `gdexp report --experiment` crashed."""
    import gdexp as api
    from gdexp.report.select import coordinates

    code, _, err = gdexp("-m", "loss=booth,mlp", "optimizer.lr=0.01", "stopping.maxiter=10", "tracking.eval_every=5")
    assert code == 0, err
    runs = api.load_runs()
    found = {row.loss: coordinates(api.load_curve(row.run_id).columns) for row in runs.itertuples()}
    assert found == {"booth": ["x[0]", "x[1]"], "mlp": []}


# --- 20: what `pytest --doctest-modules gdexp` found ------------------------------------------------
def test_a_sweep_runs_after_gdexps_sweepers_were_imported_first(tmp_path):
    """Importing sweepers/grid.py before any Hydra app (as doctest collection does) subclassed a
    BasicSweeper that Hydra's first plugin scan then replaced: every later sweep failed."""
    script = ("import gdexp.hydra.sweepers.grid, gdexp.hydra.sweepers.lr_find\n"
              "from gdexp.commands.main import main\n"
              "main(['-m', 'loss=booth', 'optimizer.lr=0.01,0.1', 'stopping.maxiter=5'])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GDEXP_PARENT_RUN_ID")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    _, children, parents = runs_of(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(children) == 2 and len(parents) == 1
