"""What a run leaves in a real SQLite MLflow store, read back through MLflow's client."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from gdexp.specs.run_spec import config_hash, build_spec
from gdexp.tracking.store import resolve_uri


def only_run(uri):
    cl = MlflowClient(uri)
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    assert len(runs) == 1
    return cl, runs[0]


def artifact_path(cl, run, name):
    return cl.download_artifacts(run.info.run_id, name)


def test_a_run_records_params_curves_tags_and_artifacts(gdexp, store):
    code, _, err = gdexp("loss=quadratic", "loss.eigenvalues=[1,10,100]", "optimizer=gd",
                         "optimizer.lr=0.015", "stopping.maxiter=500", "tracking.curve_points=1000")
    assert code == 0, err
    cl, run = only_run(store)
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED" and run.info.run_name == "quadratic-gd-lr=0.015"
    assert p["loss.name"] == "quadratic" and p["optimizer.name"] == "gd"
    assert p["optimizer.lr"] == "0.015" and p["stopping.maxiter"] == "500"
    assert json.loads(p["loss.eigenvalues"]) == [1.0, 10.0, 100.0]
    assert t["gdexp.status"] == "max_iters" and t["gdexp.diverged"] == "false"
    assert "gdexp.diverged_step" not in t
    assert m["iterations"] == 500
    assert m["lr_max_stable"] == pytest.approx(2 / 100) and m["lr_optimal"] == pytest.approx(2 / 101)
    history = cl.get_metric_history(run.info.run_id, "loss")
    assert sorted(h.step for h in history) == list(range(501))  # every step: 501 <= curve_points
    curve = pd.read_parquet(artifact_path(cl, run, "curve.parquet"))
    assert list(curve.columns) == ["step", "loss", "grad_norm", "x[0]", "x[1]", "x[2]"] and len(curve) == 501
    by_step = {h.step: h.value for h in history}
    np.testing.assert_array_equal(curve["loss"].to_numpy(), [by_step[s] for s in range(501)])
    # The logged numbers are the theory's: GD on a diagonal quadratic from (1,1,1).
    lam, lr = np.array([1.0, 10.0, 100.0]), 0.015
    expected = 0.5 * np.sum(lam * (1 - lr * lam) ** (2 * 500))
    assert m["final_loss"] == pytest.approx(expected, rel=1e-9)
    result = json.loads(open(artifact_path(cl, run, "result.json")).read())
    assert result["status"] == "max_iters" and result["iterations"] == 500
    assert result["x"] == pytest.approx(list(curve.iloc[-1][["x[0]", "x[1]", "x[2]"]]))
    assert t["gdexp.config_hash"] == result["config_hash"]


def test_a_diverged_run_is_flagged_and_stores_nothing_infinite(gdexp, store):
    code, _, err = gdexp("loss=quadratic", "optimizer.lr=0.03", "stopping.maxiter=500")
    assert code == 0, err
    cl, run = only_run(store)
    t, m = run.data.tags, run.data.metrics
    assert t["gdexp.status"] == "diverged" and t["gdexp.diverged"] == "true"
    assert t["gdexp.divergence"] == "threshold"
    step = int(t["gdexp.diverged_step"])
    assert 0 < step < 500 and m["iterations"] == step
    for name in ("loss", "grad_norm"):
        values = [h.value for h in cl.get_metric_history(run.info.run_id, name)]
        assert max(values) < 1e300
    assert all(np.isfinite(v) for v in m.values())
    # |1 - 0.03 * 100| = 2: the loss grows 4x a step past the 1e4 threshold.
    assert step == int(np.ceil(np.log(1e4 * 50.55 / 50) / np.log(4)))


def test_nan_divergence_keeps_metrics_finite(gdexp, store):
    code, _, err = gdexp("loss=rosenbrock", "optimizer.lr=1.0", "stopping.divergence_factor=inf",
                         "stopping.maxiter=200")
    assert code == 0, err
    cl, run = only_run(store)
    t = run.data.tags
    assert t["gdexp.status"] == "diverged" and t["gdexp.divergence"] in ("nan", "inf")
    summary = {k: v for k, v in run.data.metrics.items() if k not in ("loss", "grad_norm") and "." not in k}
    assert set(summary) == {"final_loss", "best_loss", "iterations", "lr"}  # `seed`, a constant: a param only
    assert all(np.isfinite(v) for v in summary.values())
    # Non-finite points stay out of MLflow's curve (a NaN latest value hides the chart in the
    # MLflow UI; MLflow would turn inf into 1.8e308 silently): the curve ends at the last finite
    # step before the blow-up, and curve.parquet keeps the blow-up itself.
    history = sorted(cl.get_metric_history(run.info.run_id, "loss"), key=lambda h: h.step)
    curve = pd.read_parquet(cl.download_artifacts(run.info.run_id, "curve.parquet"))
    last_finite = int(curve.loc[np.isfinite(curve["loss"]), "step"].max())
    assert history[-1].step == last_finite < int(t["gdexp.diverged_step"])
    assert not np.isfinite(curve["loss"].iloc[-1]) and len(curve) == int(t["gdexp.diverged_step"]) + 1
    assert all(np.isfinite(h.value) and abs(h.value) < 1.7e308 for h in history)


def test_long_curves_are_sampled_to_curve_points_keeping_key_steps(gdexp, store):
    code, _, err = gdexp("loss=rosenbrock", "optimizer.lr=0.001", "stopping.maxiter=5000",
                         "stopping.gtol=0", "tracking.curve_points=200")
    assert code == 0, err
    cl, run = only_run(store)
    steps = sorted(h.step for h in cl.get_metric_history(run.info.run_id, "loss"))
    curve = pd.read_parquet(artifact_path(cl, run, "curve.parquet"))
    assert len(curve) == 5001 and len(steps) == 200 and len(set(steps)) == 200
    assert steps[0] == 0 and steps[-1] == 5000
    assert int(curve["loss"].idxmin()) in steps


def test_config_hash_is_stable_and_ignores_where_runs_are_stored(compose):
    a = compose("optimizer.lr=0.01")
    b = compose("optimizer.lr=0.01", "tracking.experiment=elsewhere", "tracking.curve_points=50")
    c = compose("optimizer.lr=0.02")
    assert build_spec(a).config_hash == build_spec(b).config_hash != build_spec(c).config_hash
    assert config_hash(a) == config_hash(compose("optimizer.lr=0.01"))


def test_tracking_uri_defaults_to_an_absolute_sqlite_file_and_env_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_uri("sqlite:///sub/x.db") == f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_uri("sqlite:///x.db") == "http://127.0.0.1:5000"


def test_config_uri_is_used_when_no_env(gdexp, store, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / "stores").mkdir()  # gdexp does not create a store's folder (tests/faults/test_hostile_input.py)
    code, _, err = gdexp("loss=booth", "tracking.uri=sqlite:///stores/booth.db", "stopping.maxiter=5")
    assert code == 0, err
    assert (tmp_path / "stores" / "booth.db").exists()
    assert not (tmp_path / "mlflow.db").exists()
    cl, run = only_run(f"sqlite:///{tmp_path / 'stores' / 'booth.db'}")
    assert run.info.artifact_uri.startswith((tmp_path / "stores" / "mlartifacts").as_uri())


def test_a_data_file_changed_on_disk_is_read_again(compose, tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [1.0, 3.0, 5.0]}).to_csv(path, index=False)
    config = compose("loss=linear_regression", f"loss.data={path}")
    first = build_spec(config)
    pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 2.0, 3.0]}).to_csv(path, index=False)
    second = build_spec(config)
    assert first.loss.data_sha256() != second.loss.data_sha256()
    assert first.config_hash != second.config_hash
    np.testing.assert_allclose(second.loss.minima()[0], [1.0, 0.0], atol=1e-12)
