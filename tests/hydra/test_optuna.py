"""The Optuna sweeper: diverged runs are bad COMPLETE trials, failed jobs FAIL, a seed repeats a sweep."""
from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from gdexp.hydra.sweepers.optuna import DIVERGED_VALUE, objective
from cli_runner import fail_artifacts

# The quadratic's limit is 2/100 = 0.02, so lr_optuna's range 1e-5..1 reaches two decades into divergence.
QUICK = ["loss=quadratic", "stopping.maxiter=300"]


def sweep_of(uri):
    """(parent, children sorted by trial number) of the one sweep in the store."""
    cl = MlflowClient(uri)
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("gdexp.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1
    return parent, sorted(children, key=lambda r: int(r.data.tags["gdexp.optuna.trial"]))


def test_diverged_runs_are_complete_trials_with_the_worst_value(gdexp, store):
    code, out, err = gdexp("+sweep=lr_optuna", *QUICK, "hydra.sweeper.n_trials=16")
    assert code == 0, err
    parent, children = sweep_of(store)
    m = parent.data.metrics
    assert [int(r.data.tags["gdexp.optuna.trial"]) for r in children] == list(range(16))
    assert m["runs"] == m["optuna_complete"] == 16 and m["optuna_fail"] == 0
    assert m["diverged"] > 0 and m["optuna_diverged"] == m["diverged"]
    for r in children:
        assert r.data.tags["gdexp.optuna.state"] == "COMPLETE"
        if r.data.tags["gdexp.status"] == "diverged":
            assert r.data.metrics["optuna_value"] == DIVERGED_VALUE
        else:
            assert r.data.metrics["optuna_value"] == pytest.approx(math.log10(r.data.metrics["final_loss"]))
    stable = [r for r in children if r.data.tags["gdexp.status"] != "diverged"]
    best = min(stable, key=lambda r: r.data.metrics["optuna_value"])
    assert m["optuna_best.optimizer.lr"] == float(best.data.params["optimizer.lr"]) == m["best_lr"]
    assert m["optuna_best_value"] == best.data.metrics["optuna_value"]
    assert parent.data.tags["gdexp.optuna_best.optimizer.lr"] == best.data.params["optimizer.lr"]
    assert f"16 complete, of which {m['diverged']:g} diverged" in out


def learning_rates(gdexp, tmp_path, monkeypatch, name, *args):
    uri = f"sqlite:///{tmp_path / name / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, _, err = gdexp("+sweep=lr_optuna", *QUICK, "hydra.sweeper.n_trials=8", "hydra.sweeper.batch_size=4",
                         "hydra.sweeper.n_startup_trials=4", f"hydra.sweep.dir={tmp_path / name}", *args)
    assert code == 0, err
    return [r.data.params["optimizer.lr"] for r in sweep_of(uri)[1]]


def test_the_same_seed_asks_the_same_learning_rates(gdexp, tmp_path, monkeypatch):
    # 8 trials, 4 at random then 4 from TPE: both parts must repeat.
    first = learning_rates(gdexp, tmp_path, monkeypatch, "a")
    assert learning_rates(gdexp, tmp_path, monkeypatch, "b") == first
    assert len(set(first)) == 8
    assert learning_rates(gdexp, tmp_path, monkeypatch, "c", "hydra.sweeper.seed=1") != first


def test_a_failed_job_is_a_fail_trial_and_the_sweep_exits_non_zero(gdexp, store, monkeypatch):
    fail_artifacts(monkeypatch, lambda spec, n: n == 2, OSError("disk full (injected)"))
    code, _, err = gdexp("+sweep=lr_optuna", *QUICK, "hydra.sweeper.n_trials=4")
    assert code == 1 and "1 of 4 runs failed" in err
    parent, children = sweep_of(store)
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["optuna_fail"] == 1 and parent.data.metrics["optuna_complete"] == 3
    states = [(r.info.status, r.data.tags["gdexp.optuna.state"]) for r in children]
    assert states.count(("FAILED", "FAIL")) == 1 and states.count(("FINISHED", "COMPLETE")) == 3


def test_a_search_space_from_the_command_line(gdexp, store):
    code, _, err = gdexp("+sweep=lr_optuna", "loss=quadratic", "optimizer=momentum", "hydra.sweeper.n_trials=6",
                         "optimizer.lr=0.001", "optimizer.momentum=interval(0.5,0.9)",
                         "stopping.maxiter=range(100,301,100)")
    assert code == 0, err
    _, children = sweep_of(store)
    assert {r.data.params["optimizer.lr"] for r in children} == {"0.001"}  # fixed: out of the search
    assert all(0.5 <= float(r.data.params["optimizer.momentum"]) <= 0.9 for r in children)
    assert {r.data.params["stopping.maxiter"] for r in children} <= {"100", "200", "300"}


@pytest.mark.parametrize("arg, named", [
    ("optimizer.lr=tag(log,interval(0,1))", "optimizer.lr"),
    ("optimizer.lr=interval(-1,0.1)", "optimizer.lr=-1"),
    ("hydra.sweeper.batch_size=0", "hydra.sweeper.batch_size=0"),
])
def test_bad_input_fails_before_any_run(gdexp, store, tmp_path, arg, named):
    code, _, err = gdexp("+sweep=lr_optuna", arg)
    assert code == 2 and named in err and "Traceback" not in err
    if (tmp_path / "mlflow.db").exists():
        cl = MlflowClient(store)
        assert cl.search_runs([e.experiment_id for e in cl.search_experiments()]) == []


@pytest.mark.parametrize("summary, value, name", [
    ({"status": "converged", "final_loss": 1e-12}, -12.0, "log10(final_loss)"),
    ({"status": "max_iters", "final_loss": 1e300}, 300.0, "log10(final_loss)"),
    ({"status": "max_iters", "final_loss": 0.0}, -324.0, "log10(final_loss)"),
    ({"status": "diverged", "final_loss": 1e-3}, DIVERGED_VALUE, "log10(final_loss)"),  # its last finite loss can be small
    ({"status": "failed"}, None, "log10(final_loss)"),
    # judged as best_lr is (gdexp.results.groups.monitor): a validation metric where there is one
    ({"status": "max_iters", "final_loss": 1e-6, "val_loss": 0.01}, -2.0, "log10(val_loss)"),
    ({"status": "max_iters", "final_loss": 1e-6, "val_loss": 0.5, "val_accuracy": 0.875}, 0.125, "1 - val_accuracy"),
    ({"status": "diverged", "final_loss": 1e-3, "val_loss": 0.5, "val_accuracy": 0.5}, DIVERGED_VALUE,
     "1 - val_accuracy"),
])
def test_objective(summary, value, name):
    told, told_name = objective(summary)
    assert told_name == name
    assert told is None if value is None else told == pytest.approx(value)


def test_a_classifier_is_searched_by_its_validation_accuracy_as_best_lr_is_chosen(gdexp, store):
    """The objective is the metric the sweep is judged by (1 - val_accuracy here), not the last
    mini-batch's loss: the search and the summary answer the same question."""
    code, out, err = gdexp("+sweep=lr_optuna", "loss=mlp", "loss.dataset=iris", "loss.hidden=[8]", "loss.batch_size=16",
                           "stopping.maxiter=40", "tracking.curve_points=20", "hydra.sweeper.n_trials=4",
                           "hydra.sweeper.batch_size=4", "hydra.sweeper.n_startup_trials=4")
    assert code == 0, err
    parent, children = sweep_of(store)
    assert parent.data.params["optuna.objective"] == "1 - val_accuracy"
    for r in children:
        if r.data.tags["gdexp.status"] != "diverged":
            assert r.data.metrics["optuna_value"] == pytest.approx(1 - r.data.metrics["val_accuracy"])
    best = parent.data.metrics["optuna_best_value"]
    assert best == min(r.data.metrics["optuna_value"] for r in children)
    assert f"-> 1 - val_accuracy={best:.4g}" in out


def test_a_search_over_losses_judged_differently_keeps_one_objective(gdexp, store):
    """A classifier (val_accuracy) and a quadratic (final loss) in one study: every trial is told
    the study's one metric, from its first result; a trial without it is told as failed, not a
    number of another scale."""
    code, out, err = gdexp("+sweep=lr_optuna", "loss=mlp,quadratic", "stopping.maxiter=30",
                           "tracking.curve_points=20", "hydra.sweeper.n_trials=6", "hydra.sweeper.batch_size=3",
                           "hydra.sweeper.n_startup_trials=3")
    assert code == 0, err
    parent, children = sweep_of(store)
    name = parent.data.params["optuna.objective"]
    assert {r.data.params["loss.name"] for r in children} == {"mlp", "quadratic"}  # both judged, one metric
    told = {r.info.run_id: r.data.metrics.get("optuna_value") for r in children}
    for r in children:
        if r.data.tags["gdexp.status"] == "diverged":
            continue
        if name == "1 - val_accuracy":
            expected = 1 - r.data.metrics["val_accuracy"] if "val_accuracy" in r.data.metrics else None
        else:
            expected = math.log10(r.data.metrics["final_loss"])
        assert told[r.info.run_id] == (None if expected is None else pytest.approx(expected)), r.data.params
        if expected is None:
            assert r.data.tags["gdexp.optuna.state"] == "FAIL"
    assert f"-> {name}=" in out
