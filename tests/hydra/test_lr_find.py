"""lr_find against theory: 2/lambda_max on quadratics, the closed form on linear regression; its MLflow record."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from gdexp.hydra.sweepers.lr_find import find_boundary
from cli_runner import fail_artifacts

RTOL = 0.01  # sweeps/lr_find's default


def sweep_of(uri):
    """(parent, children) of the one sweep in the store."""
    cl = MlflowClient(uri)
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("gdexp.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1  # every probe is a child of the sweep
    return parent, children


def check_against(parent, children, theory):
    m = parent.data.metrics
    assert abs(m["max_stable_lr"] / theory - 1) <= RTOL
    assert m["min_diverged_lr"] / m["max_stable_lr"] <= 1 + RTOL
    # gdexp 0.1's names stay for one release
    assert m["lr_found"] == m["lr_found_lo"] == m["max_stable_lr"] and m["lr_found_hi"] == m["min_diverged_lr"]
    # The budget's bias (~0.05% above the true limit) is far inside the bracket.
    assert m["max_stable_lr"] <= theory <= m["min_diverged_lr"]
    assert m["probes"] == m["runs"] == len(children) and m["failed"] == 0
    status = {float(r.data.params["optimizer.lr"]): r.data.tags["gdexp.status"] for r in children}
    assert len(status) == len(children)  # no learning rate probed twice
    assert all((s == "diverged") == (lr > theory) for lr, s in status.items())
    assert parent.info.status == "FINISHED" and parent.data.tags["gdexp.sweep_name"] == "lr_find"


@pytest.mark.parametrize("args, lambda_max", [
    (["loss.eigenvalues=[3,7,50]"], 50.0),
    (["loss.eigenvalues=[0.5,2,5,20,80]", "loss.rotate=true", "loss.seed=3"], 80.0),
], ids=["diagonal-3d", "rotated-5d"])
def test_on_quadratics_it_finds_two_over_lambda_max(gdexp, store, args, lambda_max):
    code, out, err = gdexp("+sweep=lr_find", "loss=quadratic", *args)
    assert code == 0, err
    parent, children = sweep_of(store)
    check_against(parent, children, 2 / lambda_max)
    assert f"max_stable_lr={parent.data.metrics['max_stable_lr']:g}" in out


def test_on_linear_regression_it_finds_the_closed_form_limit(gdexp, store, tmp_path):
    rng = np.random.default_rng(7)
    x = rng.normal(3.0, 2.0, size=40)  # off-centre, so the intercept couples with the slope
    pd.DataFrame({"x": x, "y": 0.5 * x + 1 + rng.normal(0, 0.3, size=40)}).to_csv(tmp_path / "d.csv", index=False)
    design = np.column_stack([x, np.ones_like(x)])
    theory = 2 / np.linalg.eigvalsh(2 / len(x) * design.T @ design).max()

    code, _, err = gdexp("+sweep=lr_find", "loss=linear_regression", "loss.data=d.csv")
    assert code == 0, err
    parent, children = sweep_of(store)
    assert [r.data.metrics["lr_max_stable"] for r in children] == pytest.approx([theory] * len(children), rel=1e-12)
    check_against(parent, children, theory)


def test_no_bracket_within_max_probes_fails_saying_so(gdexp, store):
    code, out, err = gdexp("+sweep=lr_find", "loss=quadratic", "hydra.sweeper.start=1e-6",
                           "hydra.sweeper.max_probes=3", "stopping.maxiter=50")
    assert code == 1
    assert "no bracket in 3 probes: every probe up to optimizer.lr=0.0001 stayed stable" in err
    parent, children = sweep_of(store)
    assert parent.info.status == "FAILED" and len(children) == 3
    assert parent.data.metrics["probes"] == 3 and parent.data.metrics["max_stable_lr"] == 1e-4
    assert "min_diverged_lr" not in parent.data.metrics
    assert "runs=3, diverged=0, failed=0" in out  # the usual summary came first


def test_a_failed_probe_stops_the_search_and_the_sweep_fails(gdexp, store, monkeypatch):
    fail_artifacts(monkeypatch, lambda spec, n: n == 2, OSError("disk full (injected)"))
    code, _, err = gdexp("+sweep=lr_find", "loss=booth", "stopping.maxiter=50")
    assert code == 1 and "probe 2 (optimizer.lr=0.01) ended failed" in err and "1 of 2 runs failed" in err
    parent, children = sweep_of(store)
    assert parent.info.status == "FAILED" and parent.data.metrics["probes"] == 2 == len(children)


@pytest.mark.parametrize("arg, named", [
    ("optimizer.lr=0.1", "optimizer.lr='0.1': lr_find chooses the learning rate itself: leave it out"),
    ("loss=quadratic,booth", "loss='quadratic,booth': lr_find runs one configuration: give one value per key"),
    ("hydra.sweeper.factor=1", "hydra.sweeper.factor=1.0"),
    ("hydra.sweeper.start=-1", "hydra.sweeper.start=-1.0"),
    ("stopping.maxiter=0", "stopping.maxiter=0"),
])
def test_bad_input_fails_before_any_run(gdexp, store, tmp_path, arg, named):
    code, _, err = gdexp("+sweep=lr_find", *([] if arg.startswith("loss=") else ["loss=booth"]), arg)
    assert code == 2 and named in err and "Traceback" not in err
    if (tmp_path / "mlflow.db").exists():
        cl = MlflowClient(store)
        assert cl.search_runs([e.experiment_id for e in cl.search_experiments()]) == []


@pytest.mark.parametrize("boundary", [3e-7, 0.04, 0.0999, 0.1, 250.0])
@pytest.mark.parametrize("start", [1e-3, 1.0])
def test_the_search_brackets_any_boundary_to_rtol(boundary, start):
    probed = []

    def is_stable(lr):
        probed.append(lr)
        return lr <= boundary

    bracket = find_boundary(is_stable, start, factor=10, rtol=RTOL, max_probes=40)
    assert bracket.within(RTOL) and bracket.lo <= boundary < bracket.hi
    assert bracket.probes == len(probed) == len(set(probed)) <= 20
