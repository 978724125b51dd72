"""The descent loop against theory, its stopping rules, and batch equivalence."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from gdexp.core.descent import descend
from gdexp.core.stopping import StoppingRules
from gdexp.core.losses import make_loss
from gdexp.core.optimizers import OPTIMIZERS, make_optimizer
from gdexp.specs.batch import execute
from gdexp.specs.run_spec import build_spec


def budget(B=1, max_iters=1000, tol=0.0, patience=0, min_delta=0.0, factor=1e4) -> StoppingRules:
    return StoppingRules.of([dict(maxiter=max_iters, gtol=tol, patience=patience,
                           min_delta=min_delta, divergence_factor=factor)] * B)


def gd_rows(loss, lrs, x0=None, **kw):
    lrs = np.asarray(lrs, dtype=float)
    start = loss.default_init() if x0 is None else np.asarray(x0, dtype=float)
    return descend(loss, make_optimizer("gd", lr=lrs), np.tile(start, (len(lrs), 1)),
                   budget(len(lrs), **kw))


SPECTRA = [[1.0, 10.0, 100.0], [0.5, 3.0], [2.0], [1.0, 4.0, 9.0, 16.0, 25.0, 36.0, 49.0]]


@pytest.mark.parametrize("eigenvalues", SPECTRA)
@pytest.mark.parametrize("rotate", [False, True])
def test_gd_on_quadratic_diverges_exactly_above_two_over_lambda_max(eigenvalues, rotate):
    loss = make_loss("quadratic", eigenvalues=eigenvalues, rotate=rotate, seed=3)
    limit = 2.0 / max(eigenvalues)
    runs = gd_rows(loss, [0.9 * limit, 0.99 * limit, 1.02 * limit, 1.2 * limit], max_iters=3000)
    for run in runs[:2]:
        assert run.status != "diverged"
        assert run.final_loss < run.loss[0]
    for run in runs[2:]:
        assert run.status == "diverged" and run.divergence == "threshold"
        assert run.diverged_step == run.iterations and run.loss[-1] > 1e4 * run.loss[0]


def test_lr_optimal_gives_the_best_worst_case_rate_kappa_minus_one_over_kappa_plus_one():
    eig = [1.0, 10.0, 100.0]
    loss = make_loss("quadratic", eigenvalues=eig)
    optimal = 2.0 / (min(eig) + max(eig))
    steps = 50

    def worst_rate(lr):
        # Start along each extreme eigenvector; the slower one sets the rate.
        starts = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
        runs = [gd_rows(loss, [lr], x0=x0, max_iters=steps)[0] for x0 in starts]
        return max((r.loss[steps] / r.loss[0]) ** (1 / (2 * steps)) for r in runs)

    kappa = max(eig) / min(eig)
    assert worst_rate(optimal) == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-9)
    # Both sides of the optimum, staying below the stability limit 2/100.
    assert worst_rate(optimal) < worst_rate(0.99 * optimal)
    assert worst_rate(optimal) < worst_rate(1.005 * optimal)


@pytest.mark.parametrize("x_cols", [["x"], ["a", "b", "c"]])
def test_gd_on_linear_regression_ends_at_the_least_squares_solution(tmp_path, x_cols):
    rng = np.random.default_rng(7)
    n = 60
    X = rng.normal(size=(n, len(x_cols)))
    y = X @ rng.normal(size=len(x_cols)) + 0.5 + 0.3 * rng.normal(size=n)
    import pandas as pd

    path = tmp_path / "data.csv"
    pd.DataFrame({**{c: X[:, j] for j, c in enumerate(x_cols)}, "y": y}).to_csv(path, index=False)
    loss = make_loss("linear_regression", data=str(path), x=x_cols if len(x_cols) > 1 else x_cols[0], y="y")
    lo, hi = loss.hessian_extremes()
    (run,) = gd_rows(loss, [2.0 / (lo + hi)], max_iters=20000, tol=1e-12)
    solution, *_ = np.linalg.lstsq(np.column_stack([X, np.ones(n)]), y, rcond=None)
    assert run.status == "converged" and run.stop_reason == "grad_tol"
    np.testing.assert_allclose(run.x, solution, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name, lr", [("gd", 0.015), ("momentum", 0.005), ("nesterov", 0.005),
                                      ("adagrad", 0.5), ("rmsprop", 0.01), ("adam", 0.05)])
def test_every_optimizer_reaches_the_minimum_of_a_quadratic(name, lr):
    assert set(OPTIMIZERS) == {"gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    loss = make_loss("quadratic", eigenvalues=[1.0, 10.0, 100.0], center=[1.0, -2.0, 0.5])
    (run,) = descend(loss, make_optimizer(name, lr=lr), loss.default_init()[None], budget(max_iters=20000, tol=1e-6))
    assert run.status == "converged", (run.stop_reason, run.final_loss)
    np.testing.assert_allclose(run.x, [1.0, -2.0, 0.5], atol=1e-3)


@pytest.mark.parametrize("name, lr", [("gd", 1e-3), ("momentum", 1e-4), ("nesterov", 1e-4),
                                      ("adam", 1e-2), ("rmsprop", 1e-4), ("adagrad", 0.1)])
def test_optimizers_descend_rosenbrock_to_its_minimum(name, lr):
    loss = make_loss("rosenbrock")
    (run,) = descend(loss, make_optimizer(name, lr=lr), np.array([[-1.5, 2.0]]), budget(max_iters=60000, tol=1e-5))
    # RMSprop's step does not shrink with the gradient: it hovers at the
    # minimum rather than meeting the gradient tolerance.
    assert run.status == ("max_iters" if name == "rmsprop" else "converged")
    np.testing.assert_allclose(run.x, [1.0, 1.0], atol=1e-3)


def test_tol_and_patience_zero_use_the_whole_budget():
    (run,) = gd_rows(make_loss("booth"), [0.05], max_iters=777, tol=0.0, patience=0)
    assert run.status == "max_iters" and run.iterations == 777 and len(run.loss) == 778


def test_patience_stops_when_the_best_loss_stops_improving():
    # lr = 2/lambda on a 1-D quadratic bounces between +x0 and -x0 forever: the
    # loss never improves, so patience must stop it exactly `patience` steps in.
    loss = make_loss("quadratic", eigenvalues=[4.0])
    (run,) = gd_rows(loss, [0.5], max_iters=1000, patience=25)
    assert run.status == "converged" and run.stop_reason == "patience" and run.iterations == 25


def test_min_delta_counts_only_real_improvements():
    loss = make_loss("quadratic", eigenvalues=[1.0])
    # Each step shrinks the loss by (1 - lr)^2 ~ 0.98. As in Keras' EarlyStopping
    # the best is only replaced by an improvement of more than min_delta, so the
    # run stops once 10 steps together gain <= 1e-3: 10 * 0.02 * f <= 1e-3, f ~ 0.005.
    (run,) = gd_rows(loss, [0.01], max_iters=100000, patience=10, min_delta=1e-3)
    assert run.stop_reason == "patience"
    last_best = run.iterations - 10
    assert np.all(run.loss[last_best + 1:] >= run.loss[last_best] - 1e-3)
    assert 0.004 < run.loss[last_best] < 0.0065


def test_gradient_tolerance_converges_at_step_zero_at_the_minimum():
    (run,) = gd_rows(make_loss("booth"), [0.01], x0=[1.0, 3.0], tol=1e-8)
    assert run.status == "converged" and run.iterations == 0 and run.final_loss == 0.0


@dataclass(frozen=True)
class _Exploding:
    """A 1-D loss whose value turns into `bad` once x passes 3 (x grows by 1 a step)."""

    bad: float
    name: str = "exploding"
    dim: int = 1

    def value_and_grad(self, x):
        f = np.where(x[:, 0] > 3.0, self.bad, 1.0 + 0 * x[:, 0])
        return f, -np.ones_like(x)


@pytest.mark.parametrize("bad, kind", [(np.nan, "nan"), (np.inf, "inf")])
def test_non_finite_loss_is_flagged_with_its_kind_and_step(bad, kind):
    (run,) = descend(_Exploding(bad), make_optimizer("gd", lr=1.0), np.zeros((1, 1)), budget(max_iters=100))
    assert run.status == "diverged" and run.divergence == kind and run.diverged_step == 4
    assert run.final_loss == 1.0  # the last finite value, not the blow-up


def test_rows_stop_on_their_own_and_batch_equals_one_at_a_time():
    loss = make_loss("rosenbrock")
    lrs = [1e-4, 1e-3, 2e-3, 5e-3, 0.1]
    together = gd_rows(loss, lrs, max_iters=3000, tol=1e-6, patience=200)
    assert len({r.iterations for r in together}) > 2  # they did stop at different steps
    for lr, run in zip(lrs, together):
        (alone,) = gd_rows(loss, [lr], max_iters=3000, tol=1e-6, patience=200)
        assert run.status == alone.status and run.iterations == alone.iterations
        for name in ("loss", "grad_norm", "path", "x"):
            np.testing.assert_array_equal(getattr(run, name), getattr(alone, name))


BATCH_CASES = [
    ["loss=rosenbrock", "optimizer=adam"],
    ["loss=quadratic", "loss.eigenvalues=[1,3,10,30,100,300,1000,2,4,8,16,32]", "loss.rotate=true", "optimizer=nesterov"],
    ["loss=linear_regression", "optimizer=rmsprop", "optimizer.centered=true", "optimizer.momentum=0.5"],
    ["loss=logistic_regression", "optimizer=momentum"],
    ["loss=rastrigin", "loss.dim=5", "optimizer=adagrad"],
]


@pytest.mark.parametrize("overrides", BATCH_CASES, ids=lambda o: o[0])
def test_configs_run_as_one_batch_give_bit_identical_curves(compose, overrides):
    specs = [build_spec(compose(*overrides, f"optimizer.lr={lr}", "stopping.maxiter=400"))
             for lr in (1e-4, 1e-3, 1e-2, 1e-1, 0.5)]
    assert len({s.batch_key for s in specs}) == 1
    together = execute(specs)
    for spec, run in zip(specs, together):
        (alone,) = execute([spec])
        assert (run.status, run.iterations) == (alone.status, alone.iterations)
        np.testing.assert_array_equal(run.loss, alone.loss)
        np.testing.assert_array_equal(run.grad_norm, alone.grad_norm)
        np.testing.assert_array_equal(run.x, alone.x)


FLAGGING = sorted(n for n, f in __import__("gdexp.core.losses", fromlist=["LOSSES"]).LOSSES.items()
                  if getattr(f, "flags_nonfinite_x", False) or n in ("linear_regression", "logistic_regression"))


@pytest.mark.parametrize("name", FLAGGING)
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_non_finite_parameter_makes_every_flagging_loss_non_finite(name, bad):
    # The loop's cheap per-step screen looks at loss and gradient norm only for losses
    # that claim this (flags_nonfinite_x); this is what makes that enough.
    loss = make_loss(name)
    assert loss.flags_nonfinite_x
    x = np.tile(loss.default_init() + 0.3, (loss.dim, 1))
    np.fill_diagonal(x, bad)
    with np.errstate(all="ignore"):
        f, g = loss.value_and_grad(x)
    assert not np.isfinite(f).any() or not np.isfinite(np.einsum("ij,ij->i", g, g)).all()
    assert all(not np.isfinite(f[i]) or not np.isfinite(g[i]).all() for i in range(loss.dim))


def test_a_non_finite_parameter_stops_a_loss_that_saturates():
    # tanh saturates: an infinite weight can leave an MLP's loss and gradient finite, so the
    # loop checks x itself for losses that do not flag non-finite parameters.
    loss = make_loss("mlp", dataset="iris", hidden=[2], val_fraction=0.0)
    assert not loss.flags_nonfinite_x
    x0 = loss.default_init()
    x0[0] = np.inf  # the first weight of the first layer
    with np.errstate(all="ignore"):
        f, g = loss.value_and_grad(x0[None])
    (run,) = descend(loss, make_optimizer("gd", lr=0.1), x0[None], budget(max_iters=50))
    assert run.status == "diverged" and run.stop_reason in ("inf", "nan") and run.iterations == 0


def _per_step(loss, optimizer, x0, row: dict):
    """The loop's semantics, one row, every rule checked at every step (the reference)."""
    x = np.asarray(x0, dtype=float)[None]
    state = optimizer.init(x)
    f, g = loss.value_and_grad(x)
    threshold, best, wait, low = row["divergence_factor"] * abs(f[0]), f[0], 0, np.inf
    curves = []
    for t in range(row["maxiter"] + 1):
        if t:
            updates, state = optimizer.update(g, state, x)
            x = x + updates
            f, g = loss.value_and_grad(x)
        fv, gn = f[0], np.sqrt(np.einsum("ij,ij->i", g, g))[0]
        curves.append((fv, gn, x[0]))
        if t and row["patience"]:
            best, wait = (fv, 0) if fv < best - row["min_delta"] else (best, wait + 1)
        values = np.concatenate([[fv, gn], x[0]])
        undefined = np.isfinite(fv) and not np.isfinite(gn) and np.isfinite(x).all() and not fv > low
        low = min(low, fv)
        for reason, fired in [("grad_undefined", undefined), ("nan", np.isnan(values).any()),
                              ("inf", np.isinf(values).any()), ("threshold", fv > threshold),
                              ("stationary", t == 0 and gn < row["gtol"]), ("grad_tol", gn < row["gtol"]),
                              ("patience", row["patience"] and wait >= row["patience"]),
                              ("max_iters", t >= row["maxiter"])]:
            if fired:
                loss_c, gn_c, x_c = (np.array(c) for c in zip(*curves))
                return reason, t, loss_c, gn_c, x_c, x[0]
    raise AssertionError("max_iters always stops a row")


@dataclass(frozen=True)
class _Scripted:
    """Each row's x[:, 0] counts steps (gd, lr=1); from step x[:, 1] on, event x[:, 2]:
    1 nan loss, 2 inf loss, 3 loss past the threshold, 4 gradient below tol,
    5 nan loss and gradient below tol together, 6 inf gradient (0: none)."""

    dim: int = 3
    name: str = "scripted"

    def value_and_grad(self, x):
        now, kind = x[:, 0] >= x[:, 1], x[:, 2]
        f = np.where(now & np.isin(kind, [1, 5]), np.nan, 1.0 + 0 * x[:, 0])
        f = np.where(now & (kind == 2), np.inf, f)
        f = np.where(now & (kind == 3), 1e9, f)
        g = np.zeros_like(x)
        g[:, 0] = np.where(now & np.isin(kind, [4, 5]), -1e-9, -1.0)
        g[:, 0] = np.where(now & (kind == 6), -np.inf, g[:, 0])
        return f, g


@pytest.mark.parametrize("dim", [3, 12], ids=["params-recorded", "params-not-recorded"])
@pytest.mark.parametrize("patience", [False, True])
def test_blocked_checks_stop_every_row_where_per_step_checks_do(dim, patience):
    # Rows stop for every reason, at steps on, before and after the loop's
    # block edges, some past their own max_iters; with patience (or above
    # MAX_TRACKED_DIM) the loop checks every step instead.
    starts = [0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 90]
    x0, rows = [], []
    for i, (kind, step) in enumerate((k, s) for k in range(7) for s in starts):
        x0.append([0.0, step, kind] + [0.5] * (dim - 3))
        rows.append(dict(maxiter=[40, 64, 100, 33][i % 4], gtol=1e-6,
                         patience=[0, 5, 20, 37][i % 4] if patience else 0,
                         min_delta=0.0, divergence_factor=1e4))
    loss, lr = _Scripted(dim), np.ones(len(rows))
    runs = descend(loss, make_optimizer("gd", lr=lr), np.array(x0), StoppingRules.of(rows))
    reasons = set()
    for i, run in enumerate(runs):
        reason, step, f, gn, xs, final_x = _per_step(loss, make_optimizer("gd", lr=lr[i:i + 1]), x0[i], rows[i])
        assert (run.stop_reason, run.iterations) == (reason, step), i
        np.testing.assert_array_equal(run.loss, f)
        np.testing.assert_array_equal(run.grad_norm, gn)
        np.testing.assert_array_equal(run.x, final_x)
        if dim <= 10:
            np.testing.assert_array_equal(run.path, xs)
        reasons.add(reason)
    assert reasons == ({"nan", "inf", "threshold", "grad_tol", "max_iters", "grad_undefined", "stationary"}
                       | ({"patience"} if patience else set()))


@pytest.mark.parametrize("name, lrs", [("gd", np.logspace(-5, -2, 40)), ("momentum", np.logspace(-5, -2, 40))])
def test_rosenbrock_sweep_matches_the_per_step_reference(name, lrs):
    loss = make_loss("rosenbrock")
    rows = [dict(maxiter=300 + 7 * i, gtol=1e-3, patience=0, min_delta=0.0, divergence_factor=1e4)
            for i in range(len(lrs))]
    x0 = np.tile([-1.5, 2.0], (len(lrs), 1))
    runs = descend(loss, make_optimizer(name, lr=lrs), x0, StoppingRules.of(rows))
    assert len({r.stop_reason for r in runs}) > 1
    for i, run in enumerate(runs):
        reason, step, f, gn, xs, final_x = _per_step(loss, make_optimizer(name, lr=lrs[i:i + 1]), x0[i], rows[i])
        assert (run.stop_reason, run.iterations) == (reason, step)
        for got, want in [(run.loss, f), (run.grad_norm, gn), (run.path, xs), (run.x, final_x)]:
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("a, b", [(1.0, 100.0), (-0.7, 20.0)])
def test_rosenbrock_2d_fast_path_is_bit_identical_to_the_nd_code(a, b):
    from gdexp.core.losses.classic import Rosenbrock

    loss = Rosenbrock(a=a, b=b)
    rng = np.random.default_rng(5)
    special = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, a, a * a, 1e200]
    x = np.concatenate([rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) * 1e160,
                        [[u, v] for u in special for v in special]])
    with np.errstate(all="ignore"):
        f, g = loss.value_and_grad(x)
        terms = loss._terms(x)
        f_nd, g_nd = loss._value(*terms), loss._grad(*terms)
    for got, want in [(f, f_nd), (g, g_nd)]:
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_two_column_squared_norm_equals_einsum():
    from gdexp.core.descent import _sq_norm

    rng = np.random.default_rng(6)
    g = rng.normal(size=(20000, 2)) * np.exp(rng.normal(size=(20000, 2)) * 40)
    g[:9] = [[np.inf, 1], [1, -np.inf], [np.nan, 0], [0, np.nan], [-0.0, -0.0], [1e200, 1e200],
             [1e-200, 1e-200], [np.inf, np.nan], [-np.inf, np.inf]]
    out = np.empty(len(g))
    with np.errstate(all="ignore"):
        _sq_norm(g, out=out)
        np.testing.assert_array_equal(out, np.einsum("ij,ij->i", g, g))
