"""gdexp.core.stability's closed forms against the iteration itself, and the runs' theory metrics.

The iteration's matrix M is built from the optimizers' own update code (one
step of torch's rule from each basis state (x, buf) on f = lambda x^2 / 2),
so a wrong closed form or a wrong update both show; bisection on its spectral
radius finds the limit to 1e-12.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from gdexp.core import stability
from gdexp.core.optimizers import make_optimizer


def iteration_matrix(name: str, lr: float, lam: float, **hyper) -> np.ndarray:
    """One step of optimizer `name` on f = lam x^2 / 2 as a matrix on the state (x[, buf])."""
    if name == "gd":
        opt = make_optimizer("gd", lr=lr, **hyper)
        x = np.ones((1, 1))
        updates, _ = opt.update(lam * x, opt.init(x), x)
        return (x + updates)[:, :1]
    opt = make_optimizer(name, lr=lr, **hyper)
    x = np.array([[1.0], [0.0]])  # row 0: s = (1, 0); row 1: s = (0, 1)
    state = opt.init(x)
    state = {**state, "momentum_buffer": np.array([[0.0], [1.0]]), "step": np.ones((2, 1))}  # past step 1
    updates, new = opt.update(lam * x, state, x)
    return np.column_stack([(x + updates)[:, 0], new["momentum_buffer"][:, 0]]).T


def radius(name, lr, lam, **hyper) -> float:
    return float(np.abs(np.linalg.eigvals(iteration_matrix(name, lr, lam, **hyper))).max())


def bisect(pred, lo: float, hi: float) -> float:
    """The point where pred turns from True (at lo) to False (at hi), to 1e-13 relative."""
    assert pred(lo) and not pred(hi)
    while hi / lo - 1 > 1e-13:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if pred(mid) else (lo, mid)
    return lo


CASES = [("gd", {}), ("gd", {"weight_decay": 0.3}),
         ("momentum", {"momentum": 0.9}), ("momentum", {"momentum": 0.5, "dampening": 0.3}),
         ("momentum", {"momentum": 0.99, "weight_decay": 0.1}), ("momentum", {"momentum": 0.0}),
         ("nesterov", {"momentum": 0.9}), ("nesterov", {"momentum": 0.3, "weight_decay": 2.0})]


@pytest.mark.parametrize("lam", [50.0, 3.7, 1234.5])
@pytest.mark.parametrize("name, hyper", CASES)
def test_lr_max_stable_is_where_the_iterations_spectral_radius_reaches_one(name, hyper, lam):
    theory = stability.lr_max_stable(name, hyper, lam)
    found = bisect(lambda lr: radius(name, lr, lam, **hyper) < 1, theory * 1e-3, theory * 10)
    assert found == pytest.approx(theory, rel=1e-9)


def test_the_issues_example_momentum_09_on_lambda_50():
    assert stability.lr_max_stable("momentum", {"momentum": 0.9}, 50.0) == pytest.approx(0.076)
    assert stability.lr_max_stable("gd", {}, 50.0) == pytest.approx(0.04)
    assert stability.lr_max_stable("nesterov", {"momentum": 0.9}, 50.0) == pytest.approx(2 * 1.9 / 2.8 / 50)


def worst_rate(name, lr, lo, hi, **hyper) -> float:
    return max(radius(name, lr, lam, **hyper) for lam in (lo, hi))


@pytest.mark.parametrize("lo, hi", [(1.0, 100.0), (0.3, 7.0), (2.0, 5000.0)])
@pytest.mark.parametrize("name, hyper", [c for c in CASES if c[0] != "nesterov"])
def test_lr_optimal_balances_the_rates_at_both_ends_of_the_spectrum(name, hyper, lo, hi):
    theory = stability.lr_optimal(name, hyper, lo, hi)
    best = worst_rate(name, theory, lo, hi, **hyper)
    for lam in np.linspace(lo, hi, 50):  # the ends are the worst
        assert radius(name, theory, lam, **hyper) <= best + 1e-12
    beta = hyper.get("momentum", 0.0)
    if stability.momentum_optimal(hyper, lo, hi) > beta:
        # Below Polyak's momentum the ends' rates cross once, at the one optimum: bisect for it.
        found = bisect(lambda lr: radius(name, lr, lo, **hyper) > radius(name, lr, hi, **hyper),
                       theory * 1e-2, theory * 1.9)
        assert found == pytest.approx(theory, rel=1e-9)
        assert best < min(worst_rate(name, theory * f, lo, hi, **hyper) for f in (0.999, 1.001))
    else:
        # Above it, a range of rates reaches heavy ball's best for this beta, sqrt(beta); lr_optimal is one.
        assert best == pytest.approx(math.sqrt(beta), rel=1e-9)


@pytest.mark.parametrize("lo, hi, dampening", [(1.0, 100.0, 0.0), (0.3, 7.0, 0.4), (4.0, 4000.0, 0.0)])
def test_at_polyaks_momentum_lr_optimal_is_polyaks_and_reaches_sqrt_beta(lo, hi, dampening):
    beta = stability.momentum_optimal({}, lo, hi)
    hyper = {"momentum": beta, "dampening": dampening}
    lr = stability.lr_optimal("momentum", hyper, lo, hi)
    assert lr == pytest.approx(4 / ((1 - dampening) * (math.sqrt(hi) + math.sqrt(lo)) ** 2), rel=1e-12)
    rates = [radius("momentum", lr, lam, **hyper) for lam in np.linspace(lo, hi, 40)]
    assert max(rates) == pytest.approx(math.sqrt(beta), rel=1e-6)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adagrad"])
def test_adaptive_optimizers_have_no_learning_rate_bound(name):
    assert stability.lr_max_stable(name, {}, 50.0) is None and stability.lr_optimal(name, {}, 1.0, 50.0) is None


def test_stability_threshold_is_lr_max_stable_read_as_a_sharpness():
    for name, hyper in CASES:
        lam = 37.0
        lr = stability.lr_max_stable(name, hyper, lam)
        assert stability.stability_threshold(name, hyper, lr) == pytest.approx(lam, rel=1e-12)
    assert stability.stability_threshold("adam", {"beta1": 0.9}, 0.1) == pytest.approx(380)
    assert stability.stability_threshold("rmsprop", {"momentum": 0.5}, 0.1) == pytest.approx(30)


@pytest.mark.parametrize("overrides, theory", [
    (["optimizer=gd"], {"lr_max_stable": 2 / 50, "lr_optimal": 2 / 53}),
    (["optimizer=momentum", "optimizer.momentum=0.9"], {"lr_max_stable": 0.076, "lr_optimal": 3.8 / 53}),
    (["optimizer=momentum", "optimizer.momentum=0.5", "optimizer.dampening=0.5"],
     {"lr_max_stable": 2 * 1.5 / 0.5 / 50, "lr_optimal": 2 * 1.5 / 0.5 / 53}),
    (["optimizer=nesterov", "optimizer.momentum=0.9"], {"lr_max_stable": 3.8 / 2.8 / 50}),
    (["optimizer=gd", "optimizer.weight_decay=1.0"], {"lr_max_stable": 2 / 51, "lr_optimal": 2 / 55}),
    (["optimizer=adam"], {}),
], ids=["gd", "momentum", "momentum-dampened", "nesterov", "gd-weight-decay", "adam"])
def test_a_runs_theory_metrics_are_its_own_optimizers(compose, overrides, theory):
    from gdexp.specs.run_spec import build_spec
    from gdexp.tracking.content import theory_metrics

    spec = build_spec(compose("loss=quadratic", "loss.eigenvalues=[3,7,50]", *overrides))
    got = theory_metrics(spec)
    got.pop("momentum_optimal", None)
    assert got == pytest.approx(theory, rel=1e-12) and set(got) == set(theory)


@pytest.mark.parametrize("overrides, name, hyper", [
    (["optimizer=momentum", "optimizer.momentum=0.9"], "momentum", {"momentum": 0.9}),
    (["optimizer=momentum", "optimizer.momentum=0.6", "optimizer.dampening=0.5"], "momentum",
     {"momentum": 0.6, "dampening": 0.5}),
    (["optimizer=nesterov", "optimizer.momentum=0.7"], "nesterov", {"momentum": 0.7}),
    (["optimizer=gd", "optimizer.weight_decay=5.0"], "gd", {"weight_decay": 5.0}),
], ids=["momentum", "momentum-dampened", "nesterov", "gd-weight-decay"])
def test_lr_find_on_a_quadratic_agrees_with_the_optimizers_own_limit(gdexp, store, overrides, name, hyper):
    from test_lr_find import check_against, sweep_of

    code, out, err = gdexp("+sweep=lr_find", "loss=quadratic", "loss.eigenvalues=[3,7,50]", *overrides)
    assert code == 0, err
    parent, children = sweep_of(store)
    theory = stability.lr_max_stable(name, hyper, 50.0)
    assert [r.data.metrics["lr_max_stable"] for r in children] == pytest.approx([theory] * len(children), rel=1e-12)
    check_against(parent, children, theory)
