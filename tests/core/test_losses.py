"""Every registered loss against finite differences, its own minima and a batch of one."""
import hashlib
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import rosen, rosen_der

from gdexp.core.errors import ConfigError
from gdexp.core.losses import LOSSES, LinearRegression, Quadratic, Rosenbrock, make_loss

# (id, registry name, config keys): every registered loss at least once, plus the
# variants whose code paths differ (rotation, n-D, shifted minimum).
CASES = [
    ("quadratic", "quadratic", {}),
    ("quadratic-rotated", "quadratic",
     {"eigenvalues": [0.5, 3.0, 40.0, 7.0], "center": [1.0, -2.0, 0.5, 3.0], "rotate": True, "seed": 3}),
    ("rosenbrock", "rosenbrock", {}),
    ("rosenbrock-5d", "rosenbrock", {"dim": 5}),
    ("rosenbrock-shifted", "rosenbrock", {"a": -0.7, "b": 20.0}),
    ("himmelblau", "himmelblau", {}),
    ("beale", "beale", {}),
    ("booth", "booth", {}),
    ("rastrigin", "rastrigin", {}),
    ("rastrigin-12d", "rastrigin", {"A": 4.0, "dim": 12}),
    ("linear_regression", "linear_regression", {"n": 30}),
    ("logistic_regression", "logistic_regression", {"n": 40}),
    ("mlp", "mlp", {"dataset": "iris", "hidden": [3], "val_fraction": 0.0}),
    ("expression", "expression", {"expr": "(1 - x)**2 + 100*(y - x**2)**2 + sin(z) * exp(-z**2)"}),
]
CONSTANT_HESSIAN = {"quadratic", "booth", "linear_regression"}
NO_KNOWN_MINIMUM = {"logistic_regression", "mlp", "expression"}


@pytest.fixture(params=CASES, ids=[case[0] for case in CASES])
def case(request):
    _, name, params = request.param
    return name, make_loss(name, **params)


def points(loss, count, seed=0):
    """Seeded points within +-2 of the loss's default start."""
    rng = np.random.default_rng(seed)
    return loss.default_init() + rng.uniform(-2.0, 2.0, (count, loss.dim))


def central_differences(f, x, rel_step):
    """(B, dim) -> (B, dim, ...) derivative of the batched f along each coordinate."""
    h = rel_step * np.maximum(1.0, np.abs(x))
    columns = []
    for i in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, i] = h[:, i]
        difference = f(x + step) - f(x - step)
        columns.append(difference / (2.0 * h[:, i]).reshape((-1,) + (1,) * (difference.ndim - 1)))
    return np.stack(columns, axis=1)


def test_every_registered_loss_has_a_case():
    assert {name for _, name, _ in CASES} == set(LOSSES)


def test_shapes_types_and_name(case):
    name, loss = case
    x = points(loss, 7)
    assert loss.name == name
    assert loss.value(x).shape == (7,) and loss.value(x).dtype == np.float64
    assert loss.grad(x).shape == (7, loss.dim) and loss.grad(x).dtype == np.float64
    assert loss.default_init().shape == (loss.dim,)
    # Synthetic data or none, except the MLP's bundled data set (its arrays' digest).
    assert (loss.data_sha256() is None) == (name != "mlp")
    assert (loss.hessian_extremes() is not None) == (name in CONSTANT_HESSIAN)
    assert (loss.minima() is None) == (name in NO_KNOWN_MINIMUM)


def test_gradient_matches_central_differences(case):
    _, loss = case
    x = points(loss, 20, seed=1)
    grad = loss.grad(x)
    numeric = central_differences(loss.value, x, rel_step=1e-6)
    # Truncation (h^2 f''') and rounding (eps f / h) both stay below 1e-7 of the gradient's scale here.
    scale = np.maximum(1.0, np.max(np.abs(grad), axis=1, keepdims=True))
    assert np.max(np.abs(grad - numeric) / scale) < 1e-6


def test_value_and_grad_is_value_and_grad(case):
    _, loss = case
    x = points(loss, 16, seed=2)
    value, grad = loss.value_and_grad(x)
    assert np.array_equal(value, loss.value(x))
    assert np.array_equal(grad, loss.grad(x))


def test_rows_are_bit_identical_alone_or_in_any_batch(case):
    _, loss = case
    x = points(loss, 64, seed=3)
    alone = [loss.value_and_grad(row[None, :]) for row in x]
    value, grad = loss.value_and_grad(x)
    assert np.array_equal(value, np.concatenate([v for v, _ in alone]))
    assert np.array_equal(grad, np.concatenate([g for _, g in alone]))
    # Memory layout must not change a row's rounding either.
    for batch in (np.asfortranarray(x), np.repeat(x, 2, axis=1)[:, ::2], np.concatenate([x] * 20)):
        assert np.array_equal(loss.value(batch)[:64], value)
        assert np.array_equal(loss.grad(batch)[:64], grad)


def only(cases):
    """Run the `case` fixture over these cases only (a test meaningless for the others is not collected for them)."""
    return pytest.mark.parametrize("case", cases, ids=[c[0] for c in cases], indirect=True)


@only([c for c in CASES if c[1] not in NO_KNOWN_MINIMUM])
def test_known_minima_are_minimal_and_stationary(case):
    _, loss = case
    minima = loss.minima()
    assert minima.ndim == 2 and minima.shape[1] == loss.dim
    rng = np.random.default_rng(4)
    for m in minima:
        assert np.max(np.abs(loss.grad(m[None, :]))) < 1e-9
        for radius in (1e-2, 1e-4):
            near = m + radius * rng.uniform(-1.0, 1.0, (50, loss.dim))
            assert loss.value(m[None, :])[0] < loss.value(near).min()


@only([c for c in CASES if c[1] in CONSTANT_HESSIAN])
def test_constant_hessian_extremes_match_finite_differences(case):
    name, loss = case
    x = points(loss, 1, seed=5)
    hessian = central_differences(loss.grad, x, rel_step=1e-4)[0]
    eig = np.linalg.eigvalsh((hessian + hessian.T) / 2)
    np.testing.assert_allclose(loss.hessian_extremes(), (eig[0], eig[-1]), rtol=1e-7)


# --- quadratic ---------------------------------------------------------------

@pytest.mark.parametrize("dim", [1, 2, 5, 20])
def test_rotated_quadratic_has_the_configured_spectrum(dim):
    eigenvalues = np.random.default_rng(dim).permutation(np.geomspace(0.3, 300.0, dim))
    center = np.linspace(-1.0, 2.0, dim)
    loss = Quadratic(eigenvalues=eigenvalues.tolist(), center=center.tolist(), rotate=True, seed=7)
    hessian = central_differences(loss.grad, center[None, :] + 0.5, rel_step=1e-3)[0]
    np.testing.assert_allclose(np.linalg.eigvalsh(hessian), np.sort(eigenvalues), rtol=1e-9)
    assert loss.hessian_extremes() == (eigenvalues.min(), eigenvalues.max())
    np.testing.assert_array_equal(loss.minima(), center[None, :])
    np.testing.assert_array_equal(loss.default_init(), center + 1.0)
    if dim > 1:  # rotated: the axes are not the coordinate axes
        off_diagonal = hessian - np.diag(np.diag(hessian))
        assert np.abs(off_diagonal).max() > 1e-6 * eigenvalues.max()  # FD noise is ~1e-10


def test_quadratic_value_rotation_and_seed():
    plain = Quadratic()
    assert plain.dim == 3
    assert plain.value(plain.default_init()[None, :])[0] == 0.5 * (1.0 + 10.0 + 100.0)
    x = points(plain, 5)
    np.testing.assert_array_equal(plain.grad(x), x * np.array([1.0, 10.0, 100.0]))
    a, b, c = (Quadratic(rotate=True, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.grad(x), b.grad(x)) and not np.allclose(a.grad(x), c.grad(x))
    # Configs from YAML lists and from tuples are the same loss.
    assert Quadratic(eigenvalues=[1, 2]) == Quadratic(eigenvalues=(1.0, 2.0))
    assert hash(Quadratic(eigenvalues=[1, 2])) == hash(Quadratic(eigenvalues=(1.0, 2.0)))


@pytest.mark.parametrize("params, key", [
    ({"eigenvalues": []}, "loss.eigenvalues"),
    ({"eigenvalues": [1.0, 0.0]}, "loss.eigenvalues"),
    ({"eigenvalues": [1.0, -3.0]}, "loss.eigenvalues"),
    ({"eigenvalues": [1.0, float("nan")]}, "loss.eigenvalues"),
    ({"eigenvalues": "big"}, "loss.eigenvalues"),
    ({"eigenvalues": [1.0, 2.0], "center": [0.0]}, "loss.center"),
    ({"eigenvalues": [1.0, 2.0], "center": [0.0, float("inf")]}, "loss.center"),
    ({"rotate": True, "seed": -1}, "loss.seed"),
])
def test_quadratic_rejects_bad_config(params, key):
    with pytest.raises(ConfigError, match=key) as error:
        make_loss("quadratic", **params)
    assert error.value.key == key


# --- classic test functions --------------------------------------------------

@pytest.mark.parametrize("dim", [2, 5])
def test_rosenbrock_agrees_with_scipy(dim):
    loss = Rosenbrock(dim=dim)
    x = np.random.default_rng(dim).uniform(-2.0, 2.0, (30, dim))
    np.testing.assert_allclose(loss.value(x), [rosen(row) for row in x], rtol=1e-13)
    np.testing.assert_allclose(loss.grad(x), [rosen_der(row) for row in x], rtol=1e-12, atol=1e-12)


def test_rosenbrock_start_and_minima():
    np.testing.assert_array_equal(Rosenbrock(dim=3).default_init(), [-1.5, 2.0, -1.5])
    np.testing.assert_array_equal(Rosenbrock(a=2.0).minima(), [[2.0, 4.0]])
    np.testing.assert_array_equal(Rosenbrock(dim=4).minima(), np.ones((1, 4)))
    assert Rosenbrock(a=2.0, dim=3).minima() is None
    for params, key in (({"dim": 1}, "loss.dim"), ({"b": 0.0}, "loss.b"), ({"a": "one"}, "loss.a")):
        with pytest.raises(ConfigError, match=key):
            make_loss("rosenbrock", **params)


def test_rastrigin_agrees_with_the_textbook_formula():
    loss = make_loss("rastrigin", A=10.0, dim=3)
    x = np.random.default_rng(0).uniform(-5.12, 5.12, (50, 3))
    textbook = 10.0 * 3 + np.sum(x**2 - 10.0 * np.cos(2 * np.pi * x), axis=1)
    np.testing.assert_allclose(loss.value(x), textbook, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss.grad(x), 2 * x + 20 * np.pi * np.sin(2 * np.pi * x), rtol=1e-12, atol=1e-11)
    np.testing.assert_array_equal(loss.default_init(), [2.2, 2.2, 2.2])


@pytest.mark.parametrize("name", ["himmelblau", "beale", "booth", "rastrigin", "rosenbrock"])
def test_classic_minima_have_value_zero(name):
    loss = make_loss(name)
    minima = loss.minima()
    assert len(np.unique(minima, axis=0)) == len(minima) == (4 if name == "himmelblau" else 1)
    assert np.all(loss.value(minima) < 1e-25)


# --- linear regression -------------------------------------------------------

def design(features):
    return np.column_stack([features, np.ones(len(features))])


def test_synthetic_linear_regression_data_hessian_and_minimum():
    loss = make_loss("linear_regression", n=50, slope=2.0, intercept=-1.0, noise=0.1, seed=9)
    rng = np.random.default_rng(9)
    x = rng.standard_normal(50)
    np.testing.assert_array_equal(loss.features[:, 0], x)
    np.testing.assert_array_equal(loss.targets, 2.0 * x - 1.0 + 0.1 * rng.standard_normal(50))
    z = design(x)
    eig = np.linalg.eigvalsh(2.0 / 50 * z.T @ z)
    np.testing.assert_allclose(loss.hessian_extremes(), (eig[0], eig[-1]), rtol=1e-12)
    solution = np.linalg.lstsq(z, loss.targets, rcond=None)[0]
    np.testing.assert_allclose(solution, [2.0, -1.0], atol=0.05)
    np.testing.assert_allclose(loss.minima()[0], solution, rtol=1e-12)
    assert np.max(np.abs(loss.grad(solution[None, :]))) < 1e-12
    w = points(loss, 5)
    np.testing.assert_allclose(loss.value(w), np.mean((w @ z.T - loss.targets) ** 2, axis=1), rtol=1e-12)


def test_multivariate_linear_regression_from_csv(tmp_path):
    rng = np.random.default_rng(11)
    features = rng.standard_normal((40, 3))
    target = features @ [1.5, -2.0, 0.25] + 3.0 + 0.01 * rng.standard_normal(40)
    path = tmp_path / "data.csv"
    pd.DataFrame({"a": features[:, 0], "b": features[:, 1], "c": features[:, 2], "t": target}).to_csv(path, index=False)

    loss = make_loss("linear_regression", data=str(path), x=["a", "b", "c"], y="t")
    assert loss.dim == 4
    assert loss.data_sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
    np.testing.assert_array_equal(loss.features, features)  # the CSV round-trips every double
    solution = np.linalg.lstsq(design(features), target, rcond=None)[0]
    np.testing.assert_allclose(loss.minima()[0], solution, rtol=1e-10)
    np.testing.assert_allclose(solution, [1.5, -2.0, 0.25, 3.0], atol=0.02)
    eig = np.linalg.eigvalsh(2.0 / 40 * design(features).T @ design(features))
    np.testing.assert_allclose(loss.hessian_extremes(), (eig[0], eig[-1]), rtol=1e-12)
    # One column given as a plain string is the univariate model on that column.
    single = make_loss("linear_regression", data=str(path), x="b", y="t")
    assert single.dim == 2
    np.testing.assert_array_equal(single.features[:, 0], features[:, 1])


@pytest.mark.parametrize("content, params, key, shown", [
    (None, {}, "loss.data", "missing.csv"),
    ("", {}, "loss.data", "data.csv"),
    ("x,y\n1,2\n", {}, "loss.data", "data.csv"),
    ("u,y\n1,2\n3,4\n", {}, "loss.x", "u, y"),
    ("x,v\n1,2\n3,4\n", {}, "loss.y", "x, v"),
    ("x,y\n1,2\n3,4\n", {"x": ["x", "z"]}, "loss.x", "'z'"),
    ("x,y\none,2\ntwo,4\n", {}, "loss.x", "not numeric"),
    ("x,y\n1,2\n3,\n", {}, "loss.y", "missing"),
    ("x,y\n1,2\n3,4\n", {"y": "x"}, "loss.y", "feature"),
])
def test_linear_regression_rejects_bad_data(tmp_path, content, params, key, shown):
    path = tmp_path / ("missing.csv" if content is None else "data.csv")
    if content is not None:
        path.write_text(content)
    params = {"data": str(path), "x": "x", "y": "y", **params}
    with pytest.raises(ConfigError) as error:
        make_loss("linear_regression", **params)
    value = params[key.removeprefix("loss.")] if key != "loss.data" else params["data"]
    assert error.value.key == key
    assert key in str(error.value) and str(value) in str(error.value) and shown in str(error.value)


@pytest.mark.parametrize("params, key", [({"n": 1}, "loss.n"), ({"noise": -0.1}, "loss.noise"),
                                         ({"slope": float("nan")}, "loss.slope")])
def test_linear_regression_rejects_bad_synthetic_settings(params, key):
    with pytest.raises(ConfigError, match=key):
        make_loss("linear_regression", **params)


def test_linear_regression_built_from_arrays():
    loss = LinearRegression(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]))
    np.testing.assert_allclose(loss.minima(), [[2.0, 1.0]], atol=1e-14)
    assert loss.value(np.array([[2.0, 1.0], [0.0, 0.0]]))[1] == (1 + 9 + 25) / 3


# --- logistic regression -----------------------------------------------------

def test_synthetic_logistic_regression_classes():
    loss = make_loss("logistic_regression", n=400, separation=3.0, seed=1)
    labels = loss.targets
    assert np.sum(labels == 0) == np.sum(labels == 1) == 200
    for label, sign in ((0.0, -1.0), (1.0, 1.0)):
        mean = loss.features[labels == label].mean(axis=0)
        np.testing.assert_allclose(mean, sign * 1.5 / math.sqrt(2.0) * np.ones(2), atol=0.2)
    # At w = 0 every p is 1/2, so the cross-entropy is log 2.
    assert loss.value(np.zeros((1, 3)))[0] == pytest.approx(math.log(2.0), rel=1e-15)


def test_logistic_regression_agrees_with_the_textbook_formula_and_never_overflows():
    loss = make_loss("logistic_regression", n=60)
    w = points(loss, 10)
    p = 1.0 / (1.0 + np.exp(-(w[:, :2] @ loss.features.T + w[:, 2:])))
    y = loss.targets
    np.testing.assert_allclose(loss.value(w), -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1), rtol=1e-12)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grad = loss.value_and_grad(np.array([[800.0, 800.0, 0.0], [-800.0, -800.0, 0.0]]))
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)) and np.all(value > 100)


def test_logistic_regression_from_csv(tmp_path):
    path = tmp_path / "classes.csv"
    path.write_text("f,label\n-1.0,0\n-0.5,0\n0.5,1\n1.0,1\n")
    loss = make_loss("logistic_regression", data=str(path), x="f", y="label")
    assert loss.dim == 2 and loss.data_sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
    np.testing.assert_array_equal(loss.targets, [0.0, 0.0, 1.0, 1.0])
    path.write_text("f,label\n-1.0,0\n-0.5,2\n0.5,1\n")
    with pytest.raises(ConfigError, match="loss.y='label'.*0, 1, 2"):
        make_loss("logistic_regression", data=str(path), x="f", y="label")


# --- registry ----------------------------------------------------------------

def test_make_loss_rejects_unknown_names_and_keys():
    with pytest.raises(ConfigError) as error:
        make_loss("nope")
    assert error.value.key == "loss.name" and "'nope'" in str(error.value)
    assert all(name in str(error.value) for name in LOSSES)
    with pytest.raises(ConfigError, match="loss.eigenvalue=.*eigenvalues, center, rotate, seed"):
        make_loss("quadratic", eigenvalue=[1.0])


def test_make_loss_accepts_hydra_lists(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    loss = make_loss("quadratic", eigenvalues=omegaconf.ListConfig([2.0, 5.0]))
    assert loss.hessian_extremes() == (2.0, 5.0)
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n0,1,2\n1,0,3\n2,2,4\n")
    assert make_loss("linear_regression", data=str(path), x=omegaconf.ListConfig(["a", "b"])).dim == 3
