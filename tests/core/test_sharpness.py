"""Sharpness against closed-form Hessians: quadratics, 2-D and n-D Rosenbrock, an indefinite bowl; rows and warm starts."""
import numpy as np
import pytest

from gdexp.core.losses.base import Loss
from gdexp.core.losses.classic import Rosenbrock
from gdexp.core.losses.quadratic import Quadratic
from gdexp.core.sharpness import hessian_vector_product, sharpness

RNG = np.random.default_rng(12)
SPECTRA = [
    (1.0, 10.0, 100.0),
    (3.0, 7.0, 50.0),
    tuple(RNG.uniform(0.1, 100.0, 8)),
    tuple(RNG.uniform(0.01, 1.0, 15)),
    tuple(np.r_[RNG.uniform(0.1, 10.0, 37), 40.0, 80.0, 200.0]),  # d = 40 > iters: Lanczos must converge
]


@pytest.mark.parametrize("rotate", [False, True], ids=["axes", "rotated"])
@pytest.mark.parametrize("eigenvalues", SPECTRA, ids=[f"d{len(e)}" for e in SPECTRA])
def test_quadratic_equals_lambda_max_at_every_point(eigenvalues, rotate):
    loss = Quadratic(eigenvalues=eigenvalues, rotate=rotate, seed=5)
    x = RNG.normal(scale=3.0, size=(6, len(eigenvalues)))
    result = sharpness(loss, x)
    np.testing.assert_allclose(result.lam, max(eigenvalues), rtol=1e-6, atol=0)
    assert result.converged.all() and (result.hvps <= min(20, len(eigenvalues))).all()
    # The vector is the top eigenvector: H v = lambda v.
    hv = np.einsum("ij,bj->bi", loss._hessian, result.v)
    np.testing.assert_allclose(hv, max(eigenvalues) * result.v, atol=1e-5 * max(eigenvalues))


def test_quadratic_along_a_descent_path_with_warm_starts():
    loss = Quadratic(eigenvalues=SPECTRA[4], rotate=True, seed=1)
    x, v = np.ones((1, 40)), None
    for _ in range(20):
        result = sharpness(loss, x, v)
        assert result.lam[0] == pytest.approx(200.0, rel=1e-6)
        v = result.v
        x = x - 0.009 * loss.grad(x)


def _rosenbrock_hessian_2d(p):
    x, y = p
    return np.array([[1200 * x**2 - 400 * y + 2, -400 * x], [-400 * x, 200.0]])


def _gd_path(loss, start, lr, steps, every):
    x, points = np.array([start], dtype=float), []
    for t in range(steps):
        if t % every == 0:
            points.append(x[0].copy())
        x = x - lr * loss.grad(x)
    return np.array(points)


def test_rosenbrock_2d_along_gd_paths_including_indefinite_points():
    loss = Rosenbrock()
    points = np.concatenate([_gd_path(loss, start, 1e-3, 400, 20)
                             for start in ([-1.5, 2.0], [0.0, 1.0], [-0.5, 1.5], [1.2, 0.5])])
    hessians = [_rosenbrock_hessian_2d(p) for p in points]
    spectra = np.array([np.linalg.eigvalsh(h) for h in hessians])
    indefinite = spectra[:, 0] < 0
    assert 5 <= indefinite.sum() < len(points)  # saddle regions are covered, and convex ones
    # At the indefinite points the largest |eigenvalue| is sometimes the negative one:
    # power iteration would return it.
    result = sharpness(loss, points)
    np.testing.assert_allclose(result.lam, spectra[:, 1], rtol=1e-6, atol=0)
    assert (result.hvps == 2).all()


def _rosenbrock_hessian(p):
    n, h = len(p), np.zeros((len(p), len(p)))
    for i in range(n - 1):
        h[i, i] += 1200 * p[i] ** 2 - 400 * p[i + 1] + 2
        h[i + 1, i + 1] += 200
        h[i, i + 1] = h[i + 1, i] = -400 * p[i]
    return h


def test_rosenbrock_nd_along_a_gd_path_with_warm_starts():
    loss = Rosenbrock(dim=10)
    points = _gd_path(loss, np.resize([-1.2, 1.0], 10), 1e-4, 300, 10)
    v, warm, cold = None, 0, 0
    for p in points:
        expected = np.linalg.eigvalsh(_rosenbrock_hessian(p))[-1]
        result = sharpness(loss, p[None], v)
        assert result.lam[0] == pytest.approx(expected, rel=1e-6)
        warm += result.hvps[0]
        cold += sharpness(loss, p[None]).hvps[0]
        v = result.v
    # Measured: 6.1 products per call warm, 8.8 cold.
    assert warm < 0.85 * cold


class IndefiniteBowl(Loss):
    """f = 1/2 x^T A x with eigenvalues (-200, -50, 1, 5) in a rotated basis: the most negative dominates."""

    dim = 4
    eigenvalues = np.array([-200.0, -50.0, 1.0, 5.0])

    def __init__(self):
        q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))
        self.hessian = (q * self.eigenvalues) @ q.T

    def value_and_grad(self, x, rows=None):
        g = np.einsum("ij,bj->bi", self.hessian, x)
        return 0.5 * np.einsum("bi,bi->b", x, g), g

    def default_init(self):
        return np.ones(4)


def test_the_largest_algebraic_eigenvalue_not_the_largest_magnitude():
    result = sharpness(IndefiniteBowl(), RNG.normal(size=(3, 4)))
    np.testing.assert_allclose(result.lam, 5.0, rtol=1e-6)


def test_a_warm_start_on_another_eigenvector_still_finds_the_top():
    # Lanczos from an exact eigenvector never leaves it; the mixed-in vector does.
    loss = Quadratic(eigenvalues=(1.0, 10.0, 100.0))
    result = sharpness(loss, np.ones((1, 3)), v0=np.array([[0.0, 1.0, 0.0]]))
    assert result.lam[0] == pytest.approx(100.0, rel=1e-9)
    assert abs(result.v[0, 2]) == pytest.approx(1.0, rel=1e-9)


def test_a_converged_warm_start_costs_few_products():
    loss = Quadratic(eigenvalues=SPECTRA[4], rotate=True, seed=2)
    x = RNG.normal(size=(2, 40))
    cold = sharpness(loss, x)
    warm = sharpness(loss, x, cold.v)
    np.testing.assert_allclose(warm.lam, 200.0, rtol=1e-9)
    assert (warm.hvps < cold.hvps).all()


def test_rows_are_independent():
    loss = Rosenbrock(dim=30)
    x = RNG.normal(size=(5, 30))
    v0 = np.where(np.arange(5)[:, None] % 2 == 0, RNG.normal(size=(5, 30)), 0.0)  # zero rows start cold
    batch = sharpness(loss, x, v0)
    assert len(set(batch.hvps.tolist())) > 1  # rows stopped at different iterations
    for i in [4, 0, 3]:
        alone = sharpness(loss, x[i:i + 1], v0[i:i + 1])
        assert alone.lam[0] == batch.lam[i] and np.array_equal(alone.v[0], batch.v[i])
        assert alone.hvps[0] == batch.hvps[i]


def test_a_diverged_row_is_nan_and_leaves_the_others_alone():
    loss = Rosenbrock()
    x = np.array([[0.5, 0.5], [np.inf, 1.0], [np.nan, 0.0], [-1.0, 2.0]])
    result = sharpness(loss, x)
    assert np.isnan(result.lam[1:3]).all() and not result.converged[1:3].any()
    expected = [np.linalg.eigvalsh(_rosenbrock_hessian_2d(p))[-1] for p in x[[0, 3]]]
    np.testing.assert_allclose(result.lam[[0, 3]], expected, rtol=1e-6)


def test_iters_cap_the_products_and_flag_non_convergence():
    loss = Quadratic(eigenvalues=tuple(np.linspace(1.0, 100.0, 60)), rotate=True)
    result = sharpness(loss, np.ones((1, 60)), iters=5)
    assert result.hvps[0] == 5 and not result.converged[0]
    assert result.lam[0] < 100.0  # the top Ritz value bounds lambda_max from below


def test_central_differences_against_the_exact_product():
    loss = Rosenbrock(dim=5)
    x, v = RNG.normal(size=(4, 5)), RNG.normal(size=(4, 5))
    exact = np.einsum("bij,bj->bi", np.array([_rosenbrock_hessian(p) for p in x]), v)
    np.testing.assert_allclose(hessian_vector_product(loss, x, v), exact, rtol=1e-8, atol=1e-8 * np.abs(exact).max())
    assert (hessian_vector_product(loss, x, np.zeros((4, 5))) == 0).all()


def test_an_exact_hvp_method_is_used():
    class Counted(IndefiniteBowl):
        calls = 0

        def hvp(self, x, v):
            Counted.calls += 1
            return np.einsum("ij,bj->bi", self.hessian, v)

        def value_and_grad(self, x, rows=None):
            raise AssertionError("an exact hvp needs no gradient")

    result = sharpness(Counted(), RNG.normal(size=(2, 4)))
    assert Counted.calls == result.hvps.max()
    np.testing.assert_allclose(result.lam, 5.0, rtol=1e-12)


def test_v0_shape_is_checked():
    with pytest.raises(ValueError, match=r"v0 must have x's shape \(2, 3\)"):
        sharpness(Quadratic(), np.ones((2, 3)), v0=np.ones((1, 3)))
