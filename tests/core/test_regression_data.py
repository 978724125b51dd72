"""Linear and logistic regression on bundled data sets (loss.dataset) and on mini-batches (rows)."""
from __future__ import annotations

import numpy as np
import pytest

from gdexp.core.data import SKLEARN_DATASETS, load_dataset
from gdexp.core.descent import Options, descend
from gdexp.core.errors import ConfigError
from gdexp.core.losses import make_loss
from gdexp.core.losses.regression import BUNDLED, LinearRegression, LogisticRegression
from gdexp.core.optimizers import make_optimizer
from gdexp.core.stopping import StoppingRules

LOSSES = {
    "linear_regression": dict(dataset="diabetes"),
    "logistic_regression": dict(dataset="breast_cancer"),
    "linear_synthetic": dict(n=40, seed=3),
    "logistic_synthetic": dict(n=60, seed=3),
}


def build(case: str):
    name = case if case in ("linear_regression", "logistic_regression") else \
        f"{case.split('_')[0]}_regression"
    return make_loss(name, **LOSSES[case])


def points_and_rows(loss, seed: int, runs: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(runs, dim) seeded points near 0 and (runs, m) mini-batch indices, each row its own."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, size=(runs, loss.dim))
    return x, np.stack([rng.choice(loss.n_data, size=m, replace=False) for _ in range(runs)])


def central_differences(loss, x: np.ndarray, rows, h: float = 1e-6) -> np.ndarray:
    """(B, d) gradient of each row's mini-batch loss by central differences."""
    grad = np.empty_like(x)
    for j in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[j] = h
        grad[:, j] = (loss.value_and_grad(x + e, rows)[0] - loss.value_and_grad(x - e, rows)[0]) / (2 * h)
    return grad


@pytest.mark.parametrize("case", LOSSES)
def test_mini_batch_gradients_match_central_differences(case):
    loss = build(case)
    x, rows = points_and_rows(loss, seed=0, runs=3, m=7)
    f, g = loss.value_and_grad(x, rows)
    assert f.shape == (3,) and g.shape == (3, loss.dim)
    np.testing.assert_allclose(g, central_differences(loss, x, rows), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", LOSSES)
def test_a_mini_batch_is_the_full_loss_of_its_points(case):
    """Row b's value and gradient on rows[b] equal the full-batch loss of a fit to those points alone."""
    loss = build(case)
    x, rows = points_and_rows(loss, seed=1, runs=2, m=9)
    f, g = loss.value_and_grad(x, rows)
    for b in range(2):
        alone = type(loss)(loss.features[rows[b]], loss.targets[rows[b]])
        f_b, g_b = alone.value_and_grad(x[b:b + 1])
        np.testing.assert_allclose(f[b], f_b[0], rtol=1e-13)
        np.testing.assert_allclose(g[b], g_b[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", LOSSES)
def test_rows_are_independent_of_the_other_rows(case):
    loss = build(case)
    x, rows = points_and_rows(loss, seed=2, runs=5, m=6)
    f, g = loss.value_and_grad(x, rows)
    f2, g2 = loss.value_and_grad(x[2:3], rows[2:3])
    assert f[2] == f2[0] and np.array_equal(g[2], g2[0])


@pytest.mark.parametrize("name, dataset", [("linear_regression", "diabetes"),
                                           ("logistic_regression", "breast_cancer")])
def test_batch_size_n_is_bit_identical_to_full_batch_descent(name, dataset):
    loss = make_loss(name, dataset=dataset)
    x0 = np.repeat(loss.default_init()[None], 2, axis=0)
    rules = StoppingRules.of([dict(maxiter=60, gtol=0.0, patience=0, min_delta=0.0, divergence_factor=1e4)] * 2)
    opt = make_optimizer("gd", lr=np.array([0.05, 0.2]))
    full = descend(loss, opt, x0, rules)
    same = descend(loss, opt, x0, rules, Options(batch_size=loss.n_data, seeds=np.array([0, 1])))
    mini = descend(loss, opt, x0, rules, Options(batch_size=loss.n_data - 1, seeds=np.array([0, 1])))
    for a, b, c in zip(full, same, mini):
        assert np.array_equal(a.loss, b.loss) and np.array_equal(a.x, b.x)
        assert not np.array_equal(a.loss[1:], c.loss[1:])  # one point fewer is a mini-batch: it differs


def test_bundled_sets_are_every_row_standardized():
    diabetes, cancer = make_loss("linear_regression", dataset="diabetes"), \
        make_loss("logistic_regression", dataset="breast_cancer")
    assert isinstance(diabetes, LinearRegression) and isinstance(cancer, LogisticRegression)
    assert (diabetes.n_data, diabetes.dim, cancer.n_data, cancer.dim) == (442, 11, 569, 31)
    for loss in (diabetes, cancer):
        np.testing.assert_allclose(loss.features.mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_allclose(loss.features.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose([diabetes.targets.mean(), diabetes.targets.std()], [0.0, 1.0], atol=1e-12)
    assert set(np.unique(cancer.targets)) == {0.0, 1.0}
    assert diabetes.data_sha256() == load_dataset("diabetes", val_fraction=0.0).sha256
    # Standardized: the loss starts near 1 (MSE of predicting the mean) and ln 2 (p = 1/2).
    assert diabetes.value(np.zeros((1, 11)))[0] == pytest.approx(1.0)
    assert cancer.value(np.zeros((1, 31)))[0] == pytest.approx(np.log(2.0))


def test_bundled_lists_follow_the_data_sets():
    assert set(BUNDLED["regression"]) == {n for n, t in SKLEARN_DATASETS.items() if t == "regression"}
    binary = {n for n, t in SKLEARN_DATASETS.items()
              if t == "classification" and load_dataset(n, val_fraction=0.0).n_classes == 2}
    assert set(BUNDLED["binary"]) == binary


@pytest.mark.parametrize("name, params, text", [
    ("linear_regression", {"dataset": "digits"},
     "loss.dataset='digits': needs a regression data set: diabetes; 'digits' is not"),
    ("logistic_regression", {"dataset": "iris"},
     "loss.dataset='iris': needs a two-class data set: breast_cancer; 'iris' is not"),
    ("logistic_regression", {"dataset": "mnist"},
     "loss.dataset='mnist': needs a two-class data set: breast_cancer (or loss.data=<path of a CSV file>)"),
    ("linear_regression", {"dataset": "diabetes", "data": "d.csv"},
     "loss.data='d.csv': loss.dataset='diabetes' is set too; use one (loss.dataset=null to fit a CSV file)"),
])
def test_a_bad_dataset_is_one_line(name, params, text):
    with pytest.raises(ConfigError) as info:
        make_loss(name, **params)
    assert str(info.value) == text


def test_regressions_take_dataset_and_batch_size_from_the_cli(gdexp, store):
    code, out, err = gdexp("-m", "loss=logistic_regression", "loss.dataset=breast_cancer", "loss.batch_size=32",
                           "seed=0,1", "optimizer.lr=0.5", "stopping.maxiter=100", "stopping.gtol=0")
    assert code == 0, err
    import gdexp as api

    table = api.load_runs()
    assert table["loss.batch_size"].tolist() == [32, 32] and table["seed"].tolist() in ([0, 1], [1, 0])
    assert table["data_sha256"].nunique() == 1 and table["iterations"].tolist() == [100, 100]
    # Different seeds draw different batches, so their curves differ; eval_every gives the full loss.
    a, b = (api.load_curve(r) for r in table["run_id"])
    assert not np.array_equal(a["loss"], b["loss"]) and a["train_loss"].notna().sum() == 2
    code, out, err = gdexp("loss=linear_regression", "loss.dataset=iris")
    assert code == 2 and err.strip().endswith("needs a regression data set: diabetes; 'iris' is not")
