"""stability_threshold and preconditioned_sharpness (tracking.sharpness_every): each optimizer's own
edge, and Adam's and RMSprop's preconditioned sharpness (Cohen et al. 2022) against numpy."""
from __future__ import annotations

import numpy as np
import pytest

from gdexp.core.descent import Options, descend, descend_reference
from gdexp.core.losses.quadratic import Quadratic
from gdexp.core.optimizers import make_optimizer
from gdexp.core.sharpness import sharpness
from gdexp.core.stopping import StoppingRules

RULES = dict(maxiter=2000, gtol=0.0, patience=0, min_delta=0.0, divergence_factor=1e4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_preconditioned_sharpness_is_the_top_eigenvalue_of_p_inverse_h(seed):
    rng = np.random.default_rng(seed)
    loss = Quadratic(eigenvalues=list(np.sort(rng.uniform(0.5, 50, size=6))), rotate=True, seed=seed)
    p = rng.uniform(0.01, 3.0, size=(2, 6))
    # A quadratic's gradient is affine: its columns of H are gradient differences, exactly.
    e = np.eye(6)
    h = loss.value_and_grad(e)[1] - loss.value_and_grad(np.zeros((1, 6)))[1]
    found = sharpness(loss, rng.normal(size=(2, 6)), preconditioner=p)
    for row in range(2):
        expected = np.linalg.eigvals(np.diag(1 / p[row]) @ h).real.max()
        assert found.lam[row] == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("name, hyper, threshold", [
    ("gd", {}, lambda lr: 2 / lr),
    ("momentum", {"momentum": 0.5}, lambda lr: 2 * 1.5 / lr),
    ("nesterov", {"momentum": 0.9}, lambda lr: 2 * 1.9 / (2.8 * lr)),
    ("adam", {"beta1": 0.8}, lambda lr: (2 + 1.6) / (0.2 * lr)),
    ("rmsprop", {}, lambda lr: 2 / lr),
])
def test_each_optimizer_logs_its_own_threshold_and_the_loops_agree(name, hyper, threshold):
    loss = Quadratic(eigenvalues=[1.0, 30.0], rotate=True, seed=4)
    lr = np.array([0.001, 0.01])
    rules = StoppingRules.of([{**RULES, "maxiter": 300}] * 2)
    runs = descend(loss, make_optimizer(name, lr=lr, **hyper), np.ones((2, 2)), rules, Options(sharpness_every=50))
    for i, run in enumerate(runs):
        steps, values = run.events["stability_threshold"]
        assert values == pytest.approx([threshold(lr[i])] * len(steps), rel=1e-12)
        assert ("preconditioned_sharpness" in run.events) == (name in ("adam", "rmsprop"))
    ref = descend_reference(loss, make_optimizer(name, lr=lr[:1], **hyper), np.ones(2), {**RULES, "maxiter": 300},
                            Options(sharpness_every=50))
    for key, (steps, values) in runs[0].events.items():
        np.testing.assert_array_equal(ref.events[key][0], steps)
        np.testing.assert_array_equal(ref.events[key][1], values)


@pytest.mark.parametrize("lr, eigenvalues", [(0.01, [1.0, 100.0]), (0.003, [0.5, 20.0, 400.0])])
def test_rmsprops_preconditioned_sharpness_settles_at_its_threshold(lr, eigenvalues):
    # The edge of stability of adaptive methods: P adapts until P^-1 H sits at 2/lr.
    loss = Quadratic(eigenvalues=eigenvalues)
    (run,) = descend(loss, make_optimizer("rmsprop", lr=lr), np.ones((1, len(eigenvalues))),
                     StoppingRules.of([RULES]), Options(sharpness_every=20))
    _, values = run.events["preconditioned_sharpness"]
    assert np.isnan(values[0])  # step 0: no gradient seen yet
    late = values[len(values) // 2:]
    assert np.median(late) == pytest.approx(2 / lr, rel=0.05)
