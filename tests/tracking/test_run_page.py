"""What a run's page in the MLflow UI holds: metrics only for what varies, params in the form a
user types, the data set as an MLflow dataset input (read back through MlflowClient)."""
from __future__ import annotations

import pandas as pd
import pytest
from cli_runner import runs_of

# Curves and summary metrics every constant-rate run of a loss with a closed-form Hessian has.
RESULT_METRICS = {"loss", "grad_norm", "final_loss", "best_loss", "iterations", "steps_to_best", "lr"}


def test_a_single_run_logs_as_metrics_only_its_results_and_the_learning_rate(gdexp, store):
    code, _, err = gdexp("loss=linear_regression", "optimizer.lr=0.1", "stopping.maxiter=50")
    assert code == 0, err
    cl, _, _ = runs_of(store)
    (run,) = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    assert set(run.data.metrics) == RESULT_METRICS | {"optimizer.lr", "lr_max_stable", "lr_optimal"}
    assert run.data.params["loss.n"] == "100" and run.data.params["stopping.maxiter"] == "50"  # still params


def test_a_sweep_logs_as_metrics_the_numeric_keys_it_varies(gdexp, store):
    code, _, err = gdexp("-m", "loss=quadratic", "optimizer=gd,momentum", "optimizer.lr=0.001,0.01", "seed=0,1",
                         "stopping.maxiter=20")
    assert code == 0, err
    _, children, _ = runs_of(store)
    assert len(children) == 8
    for run in children:
        numeric = {k for k in run.data.metrics if "." in k or k == "seed"}
        # momentum and dampening exist under one option only; weight_decay is 0.0 under both: constant
        expected = {"optimizer.lr", "seed"} | ({"optimizer.momentum", "optimizer.dampening"}
                                               if run.data.params["optimizer.name"] == "momentum" else set())
        assert numeric == expected, run.info.run_name
        assert run.data.params["optimizer.weight_decay"] == "0.0" and "stopping.maxiter" in run.data.params


def test_list_params_are_stored_as_typed_so_a_params_filter_finds_the_runs(gdexp, store):
    code, _, err = gdexp("-m", "loss=quadratic", "loss.eigenvalues=[1,100],[0.5,10]", "optimizer.lr=0.001,0.01",
                         "stopping.maxiter=20")
    assert code == 0, err
    cl, children, _ = runs_of(store)
    found = cl.search_runs([children[0].info.experiment_id], "params.`loss.eigenvalues` = '[1,100]'")
    assert len(found) == 2 and {r.info.run_name.split("-eigenvalues=")[1] for r in found} == {"[1,100]"}
    assert len(cl.search_runs([children[0].info.experiment_id], "params.`loss.eigenvalues` = '[0.5,10]'")) == 2
    from gdexp import load_runs

    table = load_runs(tracking_uri=store)  # the same text in the table, and in the run names
    assert sorted(set(table["loss.eigenvalues"])) == ["[0.5,10]", "[1,100]"]


@pytest.mark.parametrize("loss, data, name, source", [
    ("linear_regression", "loss.dataset=diabetes", "diabetes", "sklearn.datasets.load_diabetes"),
    ("logistic_regression", "loss.dataset=breast_cancer", "breast_cancer", "sklearn.datasets.load_breast_cancer"),
    ("linear_regression", "loss.data=fit.csv", "fit.csv", "fit.csv"),
    ("logistic_regression", "loss.data=fit.csv", "fit.csv", "fit.csv"),
])
def test_a_regression_on_data_carries_it_as_an_mlflow_dataset_input(gdexp, store, tmp_path, loss, data, name,
                                                                      source):
    import json

    pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "x1": [1.0, 0.0, 1.0, 0.0], "x2": [0.5, 0.1, 0.9, 0.2],
                  "y": [0.0, 1.0, 0.0, 1.0]}).to_csv(tmp_path / "fit.csv", index=False)
    code, _, err = gdexp(f"loss={loss}", data, "optimizer.lr=0.01", "stopping.maxiter=10")
    assert code == 0, err
    cl, _, _ = runs_of(store)
    (run,) = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    (given,) = run.inputs.dataset_inputs
    assert given.dataset.name == name and json.loads(given.dataset.source) == {"uri": source}
    assert run.data.tags["gdexp.data_sha256"].startswith(given.dataset.digest)


def test_synthetic_data_has_no_dataset_input(gdexp, store):
    code, _, err = gdexp("loss=linear_regression", "optimizer.lr=0.01", "stopping.maxiter=10")
    assert code == 0, err
    cl, _, _ = runs_of(store)
    (run,) = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    assert not run.inputs.dataset_inputs


def test_the_single_run_line_of_a_classifier_gives_its_validation_accuracy(gdexp, store):
    code, out, err = gdexp("loss=mlp", "loss.dataset=iris", "loss.hidden=[4]", "optimizer.lr=0.5",
                           "stopping.maxiter=40")
    assert code == 0, err
    cl, _, _ = runs_of(store)
    (run,) = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    accuracy = run.data.metrics["val_accuracy"]
    assert f", validation accuracy {accuracy:.4g} (run {run.info.run_id})" in out.splitlines()[0]
    code, out, _ = gdexp("loss=booth", "optimizer.lr=0.01", "stopping.maxiter=5")  # no classifier: no accuracy
    assert code == 0 and "accuracy" not in out
