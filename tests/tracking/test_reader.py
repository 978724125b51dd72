"""load_runs and load_curve read back two real sweeps from a SQLite store."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from gdexp.tracking import reader
from gdexp.tracking.reader import load_curve, load_runs
from cli_runner import run_cli, store_in

QUADRATIC = ("-m", "loss=quadratic", "loss.eigenvalues=[1.0,10.0]", "optimizer.lr=0.05,0.25",
             "stopping.maxiter=200", "tracking.curve_points=20")
BOOTH = ("-m", "loss=booth", "optimizer.lr=0.01,0.05", "stopping.maxiter=100",
         "stopping.divergence_factor=inf")



def _latest_parent(cl: MlflowClient) -> str:
    ids = [e.experiment_id for e in cl.search_experiments()]
    return cl.search_runs(ids, "tags.`gdexp.sweep` = 'true'", order_by=["attributes.start_time DESC"],
                          max_results=1)[0].info.run_id


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Two sweeps in one store: (uri, quadratic parent id, booth parent id)."""
    folder = tmp_path_factory.mktemp("analysis")
    with store_in(folder) as uri:
        cl = MlflowClient(uri)
        assert run_cli(*QUADRATIC) == 0
        quadratic = _latest_parent(cl)
        assert run_cli(*BOOTH) == 0
        booth = _latest_parent(cl)
        yield uri, quadratic, booth


def test_load_runs_of_a_sweep_has_typed_columns(sweeps):
    uri, quadratic, _ = sweeps
    runs = load_runs(sweep=quadratic)
    cl = MlflowClient(uri)
    assert list(runs["lr"]) == [0.05, 0.25] and runs["lr"].dtype == np.float64
    assert list(runs["status"]) == ["max_iters", "diverged"]
    assert runs["diverged"].dtype == bool and list(runs["diverged"]) == [False, True]
    assert str(runs["diverged_step"].dtype) == "Int64" and pd.isna(runs["diverged_step"][0])
    diverged = cl.get_run(runs["run_id"][1])
    assert runs["diverged_step"][1] == int(diverged.data.tags["gdexp.diverged_step"])
    assert runs["divergence"][1] == "threshold"
    assert runs["iterations"][0] == 200 and str(runs["iterations"].dtype) == "Int64"
    assert runs["final_loss"][1] == diverged.data.metrics["final_loss"]
    # Every param under its dotted key, typed: numbers, bools, JSON lists kept as text, null missing.
    assert runs["stopping.maxiter"].dtype == np.int64 and set(runs["stopping.maxiter"]) == {200}
    assert runs["optimizer.lr"].dtype == np.float64
    assert runs["loss.rotate"].tolist() == [False, False]
    assert runs["loss.eigenvalues"][0] == "[1,10]" and pd.isna(runs["init"][0])  # a list as typed
    assert runs["lr_max_stable"].tolist() == [pytest.approx(0.2)] * 2
    assert set(runs["sweep_id"]) == {quadratic} and quadratic not in set(runs["run_id"])
    assert set(runs["config_hash"]) == {cl.get_run(r).data.tags["gdexp.config_hash"] for r in runs["run_id"]}


def test_without_arguments_the_latest_sweep_is_read(sweeps):
    _, _, booth = sweeps
    runs = load_runs()
    assert set(runs["sweep_id"]) == {booth} and list(runs["loss"]) == ["booth", "booth"]
    assert runs["stopping.divergence_factor"].dtype == np.float64
    assert np.isinf(runs["stopping.divergence_factor"]).all()


def test_an_experiment_gives_every_run_and_no_sweep_parent(sweeps):
    _, quadratic, booth = sweeps
    runs = load_runs(experiment="gdexp")
    assert len(runs) == 4 and set(runs["sweep_id"]) == {quadratic, booth}
    assert not {quadratic, booth} & set(runs["run_id"])
    # Sorted by loss, then learning rate.
    assert list(zip(runs["loss"], runs["lr"])) == [("booth", 0.01), ("booth", 0.05),
                                                  ("quadratic", 0.05), ("quadratic", 0.25)]


def test_load_curve_has_every_step_not_mlflows_sample(sweeps):
    uri, quadratic, _ = sweeps
    runs = load_runs(sweep=quadratic)
    stable, diverged = runs.iloc[0], runs.iloc[1]
    curve = load_curve(stable["run_id"])
    assert list(curve.columns) == ["step", "loss", "grad_norm", "x[0]", "x[1]"]
    assert len(curve) == 201 and curve["step"].tolist() == list(range(201))
    assert len(MlflowClient(uri).get_metric_history(stable["run_id"], "loss")) <= 20
    assert curve["loss"].iloc[-1] == stable["final_loss"]
    assert len(load_curve(diverged["run_id"])) == diverged["diverged_step"] + 1


def test_load_curve_downloads_from_a_store_that_is_not_local(sweeps, monkeypatch):
    _, quadratic, _ = sweeps
    run = load_runs(sweep=quadratic).iloc[0]
    local = load_curve(run["run_id"], artifact_uri=run["artifact_uri"])
    monkeypatch.setattr(reader, "local_dir", lambda uri: None)  # as for s3:// or mlflow-artifacts:
    pd.testing.assert_frame_equal(load_curve(run["run_id"]), local)


def test_bad_selections_say_what_is_wrong(sweeps):
    with pytest.raises(LookupError, match="no experiment named 'nope'"):
        load_runs(experiment="nope")
    with pytest.raises(ValueError, match="not both"):
        load_runs(experiment="gdexp", sweep=sweeps[1])
