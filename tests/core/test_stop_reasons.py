"""Honest verdicts: a kink is no divergence (grad_undefined), a stationary start never moved
(stationary), a user's numpy gradient is checked before any run, JAX computes in float64."""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from gdexp.core.descent import descend, descend_reference
from gdexp.core.optimizers import make_optimizer
from gdexp.core.stopping import StoppingRules

RULES = dict(maxiter=200, gtol=1e-10, patience=0, min_delta=0.0, divergence_factor=1e4)


class Cone:
    """f = ||x - c||, whose gradient (x - c)/||x - c|| is 0/0 = nan at its minimum c."""

    def __init__(self, c):
        self.c = np.asarray(c, dtype=float)
        self.dim = len(self.c)

    def value_and_grad(self, x):
        r = x - self.c
        f = np.sqrt((r * r).sum(axis=1))
        return f, r / f[:, None]

    def value(self, x):
        return self.value_and_grad(x)[0]


class Blowup:
    """The loss grows, then the gradient alone turns nan: a divergence, not a kink."""

    dim = 1

    def value_and_grad(self, x):
        f = 1.0 + x[:, 0]
        g = np.where(x[:, :1] >= 3, np.nan, -1.0)
        return f, g

    def value(self, x):
        return self.value_and_grad(x)[0]


@pytest.mark.parametrize("c, x0, lr, steps", [
    ([0.0, 0.0], [3.0, 4.0], 1.0, 5), ([0.0, 0.0], [3.0, 4.0], 2.5, 2), ([1.0, -2.0, 0.5], [1.0, -2.0, 8.5], 2.0, 4),
    ([0.0], [6.0], 3.0, 2),
])
def test_a_run_that_lands_on_a_kink_stops_there_as_grad_undefined_not_diverged(c, x0, lr, steps):
    loss = Cone(c)
    rules = StoppingRules.of([RULES])
    (run,) = descend(loss, make_optimizer("gd", lr=lr), np.array([x0]), rules)
    assert (run.status, run.stop_reason, run.iterations) == ("converged", "grad_undefined", steps)
    assert not run.diverged and run.best_loss == run.final_loss == 0.0
    ref = descend_reference(loss, make_optimizer("gd", lr=np.array([lr])), np.array(x0), RULES)
    assert (ref.stop_reason, ref.iterations) == (run.stop_reason, run.iterations)


def test_a_non_finite_gradient_after_the_loss_grew_is_still_a_divergence():
    (run,) = descend(Blowup(), make_optimizer("gd", lr=1.0), np.array([[0.0]]), StoppingRules.of([RULES]))
    assert (run.status, run.stop_reason, run.iterations) == ("diverged", "nan", 3)


def test_a_stationary_start_stops_at_step_0_and_says_so():
    from gdexp.core.losses.quadratic import Quadratic

    loss = Quadratic(eigenvalues=[1.0, 10.0])
    runs = descend(loss, make_optimizer("gd", lr=np.array([0.01, 0.1, 0.1])),
                   np.array([[0.0, 0.0], [0.0, 0.0], [1e-6, 0.0]]), StoppingRules.of([RULES] * 3))
    assert [(r.status, r.stop_reason, r.iterations) for r in runs][:2] == [("converged", "stationary", 0)] * 2
    assert runs[2].stop_reason == "grad_tol" and runs[2].iterations > 0  # it moved before it converged


def test_the_kink_example_end_to_end(gdexp, store):
    code, out, err = gdexp("-m", "loss=expression", "loss.expr=sqrt(x**2+y**2)", "init=[3,4]",
                           "optimizer.lr=1,2.5,5,10")
    assert code == 0, err
    assert "runs=4, diverged=0, failed=0, best_lr=5, max_stable_lr=10" in out
    assert "any lr in [1, 5] reaches final_loss 0 (within summary.rtol=1e-06); fastest: 5" in out
    assert "3 run(s) stopped where the gradient is undefined (a kink), not diverged" in out
    cl = MlflowClient(store)
    parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0]
    tags = {float(r.data.params["optimizer.lr"]): r.data.tags for r in cl.search_runs(["1"])
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    for lr in (1.0, 2.5, 5.0):
        assert (tags[lr]["gdexp.status"], tags[lr]["gdexp.stop_reason"], tags[lr]["gdexp.diverged"]) == \
            ("converged", "grad_undefined", "false")
    assert parent.data.metrics["diverged"] == 0 and parent.data.metrics["best_lr"] == 5.0
    a = pd.read_csv(cl.download_artifacts(parent.info.run_id, "answers.csv")).iloc[0]
    assert (a["best_lr"], a["best_lr_low"], a["best_lr_high"], a["max_stable_lr"]) == (5, 1, 5, 10)
    assert a["max_stable_lr_at_edge"] and not a["best_lr_at_edge"]


def test_a_jax_norm_kink_end_to_end(gdexp, store, tmp_path):
    pytest.importorskip("jax")
    (tmp_path / "kinks.py").write_text(textwrap.dedent("""
        import jax.numpy as jnp
        C = jnp.array([1.0, -2.0])
        def cone(x):
            return jnp.linalg.norm(x - C)
        cone.init = [4.0, 2.0]
    """))
    code, out, err = gdexp("-m", "loss=custom", "loss._target_=kinks.cone", "optimizer.lr=0.5,1,5")
    assert code == 0, err
    assert "diverged=0" in out and "best_lr=5," in out and "stopped where the gradient is undefined" in out


def test_lr_find_and_optuna_count_a_kink_as_stable():
    from gdexp.hydra.sweepers.optuna import DIVERGED_VALUE, ZERO_LOSS_VALUE, objective

    assert objective({"status": "converged", "stop_reason": "grad_undefined", "final_loss": 0.0})[0] == ZERO_LOSS_VALUE
    assert objective({"status": "converged", "stop_reason": "grad_undefined", "final_loss": 0.0})[0] != DIVERGED_VALUE


def test_lr_find_probes_that_land_on_a_kink_are_stable(gdexp, store):
    code, out, err = gdexp("+sweep=lr_find", "loss=expression", "loss.expr=sqrt(x**2+y**2)", "init=[3,4]",
                           "hydra.sweeper.start=5", "hydra.sweeper.max_probes=2", "stopping.maxiter=50")
    assert "every probe up to optimizer.lr=50 stayed stable" in err
    cl = MlflowClient(store)
    reasons = {r.data.params["optimizer.lr"]: r.data.tags.get("gdexp.stop_reason") for r in cl.search_runs(["1"])
               if "optimizer.lr" in r.data.params}
    assert reasons == {"5.0": "grad_undefined", "50.0": "max_iters"}


BAD = """
import numpy as np
from gdexp.core.losses.base import Loss

class Bowl(Loss):
    dim = 3
    factor = 2.0   # the gradient of x**2 is 2 x

    def value_and_grad(self, x, rows=None):
        w = np.array([1.0, 3.0, 0.5])
        f = (w * x**2).sum(axis=1)
        g = self.factor * w * x
        g[:, 1] *= self.wrong
        return f, g

    def default_init(self):
        return np.array([1.0, 2.0, -1.0])

class Wrong(Bowl):
    wrong = 1.001   # 0.1% off in x[1]

class Right(Bowl):
    wrong = 1.0
"""


def test_a_user_loss_class_with_a_wrong_gradient_is_one_line_exit_2_before_any_run(gdexp, store, tmp_path):
    (tmp_path / "bowls.py").write_text(BAD)
    code, out, err = gdexp("loss=custom", "loss._target_=bowls.Wrong")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("gdexp: error: loss._target_='bowls.Wrong': value_and_grad's gradient disagrees")
    assert "component x[1]" in line and "loss.check_grad=false" in line
    assert not (tmp_path / "mlflow.db").exists() or not MlflowClient(store).search_runs(["0", "1"])
    code, out, err = gdexp("loss=custom", "loss._target_=bowls.Wrong", "loss.check_grad=false")
    assert code == 0, err
    code, out, err = gdexp("loss=custom", "loss._target_=bowls.Right")
    assert code == 0, err


def test_a_jax_module_creates_float64_arrays_at_import_under_gdexp_run(tmp_path, monkeypatch, store):
    pytest.importorskip("jax")
    import jax  # imported before gdexp builds the loss: the flag must still be set in time

    (tmp_path / "consts64.py").write_text(textwrap.dedent("""
        import jax.numpy as jnp
        C = jnp.array([0.1, 0.2])
        def f(x):
            return jnp.sum((x - C) ** 2)
        f.init = [0.0, 0.0]
    """))
    monkeypatch.chdir(tmp_path)
    jax.config.update("jax_enable_x64", False)
    import gdexp as api

    api.run(["loss=custom", "loss._target_=consts64.f"])
    import consts64

    assert consts64.C.dtype == np.float64


def test_a_stationary_start_end_to_end_says_which_runs_never_moved(gdexp, store):
    code, out, err = gdexp("-m", "loss=quadratic", "loss.eigenvalues=[1,10]", "init=[0,0]", "optimizer.lr=0.01,0.1")
    assert code == 0, err
    assert "2 run(s) never moved: the start is already stationary: lr=0.01, lr=0.1" in out
    cl = MlflowClient(store)
    children = [r for r in cl.search_runs(["1"]) if "optimizer.lr" in r.data.params]
    assert {(r.data.tags["gdexp.status"], r.data.tags["gdexp.stop_reason"]) for r in children} == \
        {("converged", "stationary")}
    parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0]
    a = pd.read_csv(cl.download_artifacts(parent.info.run_id, "answers.csv")).iloc[0]
    assert a["never_moved"] == 2
