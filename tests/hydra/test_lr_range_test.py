"""The learning-rate range test (+sweep=lr_range_test): its stop step against the closed form, its parent's answers."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from mlflow import MlflowClient

from gdexp.specs.batch import execute
from gdexp.specs.run_spec import build_spec
from gdexp.hydra.sweepers.lr_range_test import LrRangeTestSweeper
from gdexp.results.range_test import ramp_lrs, suggest_lr


def closed_form(eigenvalues, c, lrs) -> np.ndarray:
    """GD on f = sum_i lambda_i x_i^2 / 2 from c: the loss after k ramped steps,
    sum_i lambda_i c_i^2 prod_{j<k} (1 - lr_j lambda_i)^2 / 2, for k = 0 .. len(lrs), in exact
    rational arithmetic on the float rates (rounded once at the end): where some lr_j lambda_i
    is near 1 the product is ill-conditioned, and any float evaluation of it drifts by percents."""
    out, factors = [], [Fraction(1)] * len(eigenvalues)
    lam = [Fraction(v) for v in eigenvalues]
    weights = [l * Fraction(x) ** 2 for l, x in zip(lam, c)]
    for k in range(len(lrs) + 1):
        out.append(float(sum(w * f for w, f in zip(weights, factors)) / 2))
        if k < len(lrs):
            factors = [f * (1 - Fraction(lrs[k]) * l) ** 2 for f, l in zip(factors, lam)]
    return np.array(out)


def well_conditioned(eigenvalues, lrs) -> int:
    """The steps before the first update with some |1 - lr_j lambda_i| < 1e-3: up to there a float
    descent matches the closed form to rounding; past it both are ill-conditioned."""
    near = np.abs(1 - np.outer(lrs, eigenvalues)).min(axis=1) < 1e-3
    return int(np.argmax(near)) if near.any() else len(lrs) + 1


def stop_step(losses: np.ndarray, threshold: float, last: int) -> int:
    """The first step whose loss passes threshold x the best loss of the steps before (else `last`)."""
    for k in range(1, last + 1):
        if losses[k] > threshold * losses[:k].min():
            return k
    return last


@pytest.mark.parametrize("eigenvalues, init, settings", [
    ([1.0, 10.0, 100.0], [1.0, 1.0, 1.0], {}),
    ([0.5, 3.0, 40.0], [2.0, -1.0, 0.5], {}),
    ([2.0, 7.0], [1.0, 3.0], {"start_lr": 1e-6, "end_lr": 10.0, "num_steps": 60, "threshold": 2.0}),
    ([1.0], [1.0], {"end_lr": 1.5, "num_steps": 50}),   # never passes 4x its best: runs its whole ramp
    # 12 parameters: more than the descent tracks, so it checks its rules at every step
    (np.geomspace(1.0, 100.0, 12).round(6).tolist(), [1.0] * 12, {}),
])
def test_the_range_test_stops_where_the_closed_form_says(compose, eigenvalues, init, settings):
    sweeper = LrRangeTestSweeper(**settings)
    ramp = sweeper._ramp([])
    config = compose("loss=quadratic", f"loss.eigenvalues={eigenvalues}", f"init={init}", *ramp)
    run = execute([build_spec(config)])[0]
    last = sweeper.num_steps - 1
    lrs = ramp_lrs(sweeper.start_lr, sweeper.end_lr, sweeper.num_steps, last)
    expected = closed_form(eigenvalues, init, lrs)
    k = stop_step(expected, sweeper.threshold, last)
    assert run.iterations == k
    assert run.stop_reason == ("early_stop_threshold" if k < last else "max_iters")
    good = min(k, well_conditioned(eigenvalues, lrs)) + 1
    np.testing.assert_allclose(run.loss[:good], expected[:good], rtol=1e-9)
    np.testing.assert_allclose(run.lr[1:], lrs[:k], rtol=1e-12)  # the rate of each update
    assert (run.path is None) == (len(eigenvalues) > 10)


def test_the_suggestion_is_the_steepest_descent_against_log_lr_past_the_skipped_points():
    lr = ramp_lrs(1e-8, 1.0, 100, 30)
    loss = np.ones(30)
    loss[3] = -100.0   # within the first 10 points: skipped
    loss[20:24] = [1.0, 0.9, 0.5, 0.45]   # central differences: steepest at 21 (-0.5 over two steps)
    loss[24:] = 0.44
    loss[29] = -1e9   # the last point: skipped
    assert suggest_lr(loss, lr) == lr[21]
    assert np.isnan(suggest_lr(loss[:12], lr[:12]))  # one point left: no slope


def test_the_sweep_logs_the_suggestion_and_its_ratios_to_the_grid(gdexp, store):
    code, out, err = gdexp("+sweep=lr_range_test", "loss=quadratic", "seed=0,1", "hydra.sweeper.points=5",
                           "hydra.sweeper.start_lr=1e-4")
    assert code == 0, err
    cl = MlflowClient(store)
    parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0]
    children = cl.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    tests = [r for r in children if r.data.tags.get("gdexp.lr_range_test") == "true"]
    assert len(children) == 2 + 2 * 5 and len(tests) == 2
    # The default quadratic (eigenvalues 1, 10, 100, start (1, 1, 1)): both seeds alike.
    lrs = ramp_lrs(1e-4, 1.0, 100, 99)
    expected = closed_form([1.0, 10.0, 100.0], [1.0, 1.0, 1.0], lrs)
    k = stop_step(expected, 4.0, 99)
    suggested = suggest_lr(expected[:k + 1], lrs[:k + 1])
    for run in tests:
        assert run.data.metrics["iterations"] == k
        assert run.data.metrics["suggested_lr"] == pytest.approx(suggested, rel=1e-12)
    m = parent.data.metrics
    # The grid logspace(1e-4, 1, 5): 1e-4, 1e-3, 0.01 stable (2/100 = 0.02), 0.1 and 1 diverge.
    assert (m["best_lr"], m["max_stable_lr"]) == (0.01, 0.01)
    assert m["suggested_lr"] == pytest.approx(suggested, rel=1e-12)
    assert m["suggested_to_best_lr"] == pytest.approx(suggested / 0.01, rel=1e-12)
    assert m["suggested_to_max_stable_lr"] == pytest.approx(suggested / 0.01, rel=1e-12)
    assert m["runs"] == 10  # the parent's table is the grid's
    assert "suggested_to_best_lr=" in out


def test_the_learning_rate_is_refused_in_one_line(gdexp):
    code, _, err = gdexp("+sweep=lr_range_test", "loss=quadratic", "optimizer.lr=0.1")
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("gdexp: error: optimizer.lr=") and "sets the learning rate itself" in line
