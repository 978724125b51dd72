"""The MLP loss and its data: gradients (central differences, torch autograd), init, batching, splits, errors."""
import hashlib
import math
import sys

import numpy as np
import pytest

from gdexp.core import data as data_module
from gdexp.core.data import SKLEARN_DATASETS, load_dataset, split_rows
from gdexp.core.descent import descend
from gdexp.core.errors import ConfigError
from gdexp.core.losses.mlp import ACTIVATIONS, MLP, mlp
from gdexp.core.optimizers import make_optimizer
from gdexp.core.stopping import StoppingRules

# Small nets on both tasks, for every activation: (id, mlp keywords).
NETS = [(f"{dataset}-{activation}", {"dataset": dataset, "hidden": [3, 2], "activation": activation})
        for dataset in ("iris", "diabetes") for activation in ACTIVATIONS]
NETS.append(("iris-linear", {"dataset": "iris", "hidden": [], "activation": "tanh"}))


def start_points(net: MLP, count: int, seed: int = 0) -> np.ndarray:
    """default_init plus noise: biases nonzero and units away from the init's symmetry."""
    rng = np.random.default_rng(seed)
    return net.default_init() + 0.5 * rng.standard_normal((count, net.dim))


def some_rows(net: MLP, count: int, size: int = 9, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, net.n_data, (count, size))


@pytest.fixture(params=NETS, ids=[name for name, _ in NETS])
def net(request):
    return mlp(**request.param[1])


@pytest.mark.parametrize("with_rows", [False, True], ids=["full", "rows"])
def test_gradient_matches_central_differences(net, with_rows):
    x = start_points(net, 3)
    rows = some_rows(net, 3) if with_rows else None
    _, grad = net.value_and_grad(x, rows)
    h = 1e-6
    numeric = np.empty_like(x)
    for i in range(net.dim):
        step = np.zeros_like(x)
        step[:, i] = h
        numeric[:, i] = (net.value_and_grad(x + step, rows)[0] - net.value_and_grad(x - step, rows)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def torch_model(net: MLP):
    torch = pytest.importorskip("torch", reason="torch is the reference implementation")
    from torch import nn

    act = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}[net.activation]
    widths = (net.data.n_features, *net.hidden, 1 if net.data.task == "regression" else net.data.n_classes)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(fan_in, fan_out, dtype=torch.float64)] + ([act()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


def torch_value_and_grad(net: MLP, x: np.ndarray, rows=None):
    """The same loss by torch autograd, model by model; our layout is parameters_to_vector's."""
    import torch
    from torch import nn

    model = torch_model(net)
    values, grads = [], []
    for b, point in enumerate(x):
        nn.utils.vector_to_parameters(torch.tensor(point), model.parameters())
        inputs, targets = torch.tensor(net.data.x_train), torch.tensor(net.data.y_train)
        if rows is not None:
            inputs, targets = inputs[rows[b]], targets[rows[b]]
        out = model(inputs)
        if net.data.task == "classification":
            loss = nn.functional.cross_entropy(out, targets)
        else:
            loss = nn.functional.mse_loss(out[:, 0], targets)
        model.zero_grad()
        loss.backward()
        values.append(loss.item())
        grads.append(nn.utils.parameters_to_vector([p.grad for p in model.parameters()]).numpy())
    return np.array(values), np.array(grads)


@pytest.mark.parametrize("with_rows", [False, True], ids=["full", "rows"])
def test_value_and_gradient_match_torch_autograd(net, with_rows):
    x = start_points(net, 4)
    rows = some_rows(net, 4) if with_rows else None
    value, grad = net.value_and_grad(x, rows)
    ref_value, ref_grad = torch_value_and_grad(net, x, rows)
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15 * np.abs(ref_grad).max())


def test_a_wide_two_layer_net_matches_torch_on_digits():
    net = mlp("digits", hidden=[32, 16], activation="relu")
    x = start_points(net, 2)
    value, grad = net.value_and_grad(x)
    ref_value, ref_grad = torch_value_and_grad(net, x)
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-14 * np.abs(ref_grad).max())


def test_param_names_follow_the_layout():
    net = mlp("iris", hidden=[5])
    names = net.param_names
    assert len(names) == net.dim == 4 * 5 + 5 + 5 * 3 + 3
    assert names[:3] == ("W1[0,0]", "W1[0,1]", "W1[0,2]")
    assert names[20:22] == ("b1[0]", "b1[1]")
    assert names[25] == "W2[0,0]" and names[-1] == "b2[2]"


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_init_bounds_are_torch_nn_init_bounds(activation, monkeypatch):
    torch = pytest.importorskip("torch", reason="torch.nn.init is the reference")
    net = mlp("digits", hidden=[64, 32], activation=activation)
    init = net.default_init()
    seen = []
    monkeypatch.setattr(torch.Tensor, "uniform_", lambda self, low, high, generator=None: seen.append((low, high)))
    start = 0
    for fan_in, fan_out in [(64, 64), (64, 32), (32, 10)]:
        weight = torch.empty(fan_out, fan_in)
        if activation == "relu":
            torch.nn.init.kaiming_uniform_(weight, nonlinearity="relu")
        else:
            torch.nn.init.xavier_uniform_(weight)
        low, high = seen.pop()
        assert low == -high  # torch's bound, to the last bit
        w = init[start:start + fan_in * fan_out]
        b = init[start + fan_in * fan_out:start + fan_in * fan_out + fan_out]
        assert np.all(np.abs(w) <= high) and np.abs(w).max() > 0.97 * high
        # Uniform(-a, a): mean 0 and variance a^2 / 3, each within 4 standard errors
        # (the sample variance's relative one is sqrt(0.8 / count)).
        assert abs(w.var() / (high ** 2 / 3) - 1) < 4 * math.sqrt(0.8 / w.size)
        assert abs(w.mean()) < 4 * high / math.sqrt(3 * w.size)
        assert np.all(b == 0.0)
        start += fan_in * fan_out + fan_out
    assert start == net.dim


def test_init_depends_on_init_seed_only():
    a, b = mlp("iris", init_seed=3), mlp("iris", init_seed=3, seed=5)
    assert np.array_equal(a.default_init(), b.default_init())
    assert not np.array_equal(a.default_init(), mlp("iris", init_seed=4).default_init())


CHUNKED = [("digits-tanh", {"dataset": "digits", "hidden": [64]}),  # 7 runs span two chunks
           ("digits-relu-2", {"dataset": "digits", "hidden": [20, 20], "activation": "relu"}),
           ("diabetes-sigmoid", {"dataset": "diabetes", "hidden": [16], "activation": "sigmoid"})]


@pytest.mark.parametrize("keys", [k for _, k in CHUNKED], ids=[n for n, _ in CHUNKED])
def test_each_run_is_bit_identical_alone_and_in_a_batch_of_7(keys):
    net = mlp(**keys)
    x = start_points(net, 7)
    rows = some_rows(net, 7, size=50)
    for r in (None, rows):
        values, grads = net.value_and_grad(x, r)
        for b in range(7):
            value, grad = net.value_and_grad(x[b:b + 1], None if r is None else r[b:b + 1])
            assert value[0] == values[b] and np.array_equal(grad[0], grads[b])
    metrics = net.eval_metrics(x)
    for b in range(7):
        alone = net.eval_metrics(x[b:b + 1])
        assert all(alone[key][0] == metrics[key][b] for key in metrics)


def test_value_and_train_loss_are_value_and_grads_value():
    net = mlp("wine", hidden=[8])
    x = start_points(net, 3)
    assert np.array_equal(net.value(x), net.value_and_grad(x)[0])
    assert np.array_equal(net.eval_metrics(x)["train_loss"], net.value(x))


def test_eval_metrics_on_the_validation_split():
    torch = pytest.importorskip("torch", reason="torch gives the reference predictions")
    net = mlp("iris", hidden=[4])
    x = start_points(net, 3)
    metrics = net.eval_metrics(x)
    assert set(metrics) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    model = torch_model(net)
    for b in range(3):
        torch.nn.utils.vector_to_parameters(torch.tensor(x[b]), model.parameters())
        logits = model(torch.tensor(net.data.x_val))
        labels = torch.tensor(net.data.y_val)
        assert metrics["val_loss"][b] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-13)
        assert metrics["val_accuracy"][b] == (logits.argmax(1) == labels).double().mean().item()
    diabetes = mlp("diabetes")
    assert set(diabetes.eval_metrics(start_points(diabetes, 2))) == {"train_loss", "val_loss"}
    assert set(mlp("iris", hidden=[4], val_fraction=0).eval_metrics(x)) == {"train_loss", "train_accuracy"}


def test_softmax_is_stable_for_huge_logits():
    net = mlp("iris", hidden=[4])
    x = 1e4 * start_points(net, 2)
    value, grad = net.value_and_grad(x)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)) and value.max() > 1e3


def test_gd_on_iris_lowers_the_loss_and_classifies_the_validation_split():
    net = mlp("iris", hidden=[16], activation="tanh")
    lrs = np.array([0.3, 1.0])
    rules = StoppingRules.of([{"maxiter": 200, "gtol": 0.0, "patience": 0, "min_delta": 0.0,
                               "divergence_factor": 1e4}] * 2)
    results = descend(net, make_optimizer("gd", lr=lrs), np.tile(net.default_init(), (2, 1)), rules)
    assert [r.stop_reason for r in results] == ["max_iters", "max_iters"]
    for r in results:
        assert r.loss[-1] < 0.1 * r.loss[0]
    before, after = net.eval_metrics(net.default_init()[None]), net.eval_metrics(np.stack([r.x for r in results]))
    assert np.all(after["val_loss"] < 0.2 * before["val_loss"]), (before, after)
    assert np.all(after["val_accuracy"] > 0.9), after


# ---- data ------------------------------------------------------------------------------------


def test_split_is_deterministic_per_seed_and_sized_as_sklearn():
    from sklearn.model_selection import train_test_split

    for n, fraction in [(150, 0.2), (1797, 0.2), (10, 0.25), (7, 0.5)]:
        train, val = split_rows(n, fraction, seed=4)
        assert len(val) == len(train_test_split(np.arange(n), test_size=fraction)[1])
        assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
        again = split_rows(n, fraction, seed=4)
        assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
        assert not np.array_equal(val, split_rows(n, fraction, seed=5)[1])
    # The documented rule itself.
    order = np.random.default_rng(4).permutation(150)
    assert np.array_equal(split_rows(150, 0.2, 4)[1], np.sort(order[:30]))
    train, val = split_rows(150, 0.0, 4)
    assert len(val) == 0 and np.array_equal(train, np.arange(150))


def test_standardization_uses_training_statistics_only():
    from sklearn.datasets import load_wine

    raw = load_wine()
    wine = load_dataset("wine", seed=2)
    train = raw.data[wine.train_rows]
    mean, std = train.mean(axis=0), train.std(axis=0)
    np.testing.assert_allclose(wine.x_train, (train - mean) / std, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(wine.x_val, (raw.data[wine.val_rows] - mean) / std, rtol=1e-13, atol=1e-13)
    assert np.array_equal(wine.y_val, raw.target[wine.val_rows])
    assert wine.classes == tuple(raw.target_names)
    unscaled = load_dataset("wine", seed=2, standardize=False)
    assert np.array_equal(unscaled.x_val, raw.data[wine.val_rows])


def test_regression_targets_are_standardized_with_training_statistics():
    from sklearn.datasets import load_diabetes

    raw = load_diabetes(scaled=False)
    diabetes = load_dataset("diabetes")
    y = raw.target[diabetes.train_rows]
    assert (diabetes.target_mean, diabetes.target_scale) == (y.mean(), y.std())
    np.testing.assert_allclose(diabetes.y_val * diabetes.target_scale + diabetes.target_mean,
                               raw.target[diabetes.val_rows], rtol=1e-14)
    assert diabetes.task == "regression" and diabetes.classes is None


def write(tmp_path, text: str, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_columns_classes_constant_columns_and_checksum(tmp_path):
    lines = ["a, b ,const,label"] + [f"{i},{(i * 7) % 5},3,{['10', '9', '2'][i % 3]}" for i in range(30)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    ds = load_dataset(data=path, y="label", task="classification", val_fraction=0.2, seed=1)
    assert ds.feature_names == ("a", "b", "const")
    assert ds.classes == ("2", "9", "10")  # numeric order, not string order
    codes = np.array([{"2": 0, "9": 1, "10": 2}[['10', '9', '2'][i % 3]] for i in range(30)])
    assert np.array_equal(ds.y_train, codes[ds.train_rows])
    assert ds.feature_scale[2] == 1.0 and np.all(ds.x_train[:, 2] == 0.0)  # constant: std 1
    assert ds.sha256 == hashlib.sha256((tmp_path / "data.csv").read_bytes()).hexdigest()
    assert load_dataset(data=path, x="b", y="label", task="classification").feature_names == ("b",)
    names = load_dataset(data=write(tmp_path, "f,y\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(8)), "s.csv"))
    assert names.task == "classification" and names.classes == ("a", "b")
    floats = load_dataset(data=write(tmp_path, "f,y\n" + "".join(f"{i},{i / 3}\n" for i in range(8)), "r.csv"))
    assert floats.task == "regression"


def test_bundled_sets_load_with_their_task_and_a_stable_checksum():
    digests = set()
    for name, task in SKLEARN_DATASETS.items():
        ds = load_dataset(name)
        assert ds.task == task and ds.n_train + ds.n_val > 100
        assert ds.sha256 == load_dataset(name, seed=3).sha256 and len(ds.sha256) == 64
        digests.add(ds.sha256)
    assert len(digests) == len(SKLEARN_DATASETS)


def bad_inputs(tmp_path):
    """(keywords for mlp, the key the error names, a fragment of its reason)."""
    (tmp_path / "folder.csv").mkdir()
    ok = "f,g,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(10))
    return [
        ({"dataset": "mnist"}, "loss.dataset", "digits, iris, wine, breast_cancer, diabetes"),
        ({"dataset": None}, "loss.dataset", "give a data set"),
        ({"data": write(tmp_path, ok)}, "loss.data", "loss.dataset=null"),
        ({"dataset": None, "data": str(tmp_path / "nope.csv")}, "loss.data", "file not found"),
        ({"dataset": None, "data": str(tmp_path / "folder.csv")}, "loss.data", "not a regular file"),
        ({"dataset": None, "data": write(tmp_path, "f,f,y\n1,2,0\n3,4,1\n5,6,1\n", "dup.csv")}, "loss.data", "'f'"),
        ({"dataset": None, "data": write(tmp_path, "f,y\n1,0\nx,1\n2,1\n", "text.csv"), "task": "classification"},
         "loss.x", "not numeric (data row 2: 'x')"),
        ({"dataset": None, "data": write(tmp_path, "f,y\n1,0\n,1\n2,1\n", "gap.csv"), "task": "classification"},
         "loss.x", "not numeric"),
        ({"dataset": None, "data": write(tmp_path, "f,y\n1,0\ninf,1\n2,1\n", "inf.csv"), "task": "classification"},
         "loss.x", "missing or infinite"),
        ({"dataset": None, "data": write(tmp_path, "f,y\n1,0\n2\n", "short.csv")}, "loss.data", "data row 2 has 1 fields"),
        ({"dataset": None, "data": write(tmp_path, "", "empty.csv")}, "loss.data", "is empty"),
        ({"dataset": None, "data": write(tmp_path, ok), "y": "z"}, "loss.y", "no column 'z'"),
        ({"dataset": None, "data": write(tmp_path, ok), "x": ["f", "q"]}, "loss.x", "no column 'q'"),
        ({"dataset": None, "data": write(tmp_path, ok), "x": ["f", "y"]}, "loss.x", "target column"),
        ({"dataset": None, "data": write(tmp_path, ok), "x": ["f", "f"]}, "loss.x", "each once"),
        ({"dataset": None, "data": write(tmp_path, ok)}, "loss.task", "only integers"),
        ({"dataset": None, "data": write(tmp_path, "f,y\n1,a\n2,b\n3,x y\n", "word.csv"), "task": "regression"},
         "loss.y", "not numeric"),
        ({"dataset": None, "data": write(tmp_path, "f,y\n1,a\n2,a\n3,a\n", "one.csv")}, "loss.y", "one class"),
        ({"dataset": None, "data": write(tmp_path, "f,y\n1,a\n2,b\n", "two.csv")}, "loss.data", "too few"),
        ({"dataset": "iris", "val_fraction": 1.0}, "loss.val_fraction", "[0, 1)"),
        ({"dataset": "iris", "val_fraction": -0.1}, "loss.val_fraction", "[0, 1)"),
        ({"dataset": "iris", "val_fraction": True}, "loss.val_fraction", "[0, 1)"),
        ({"dataset": "iris", "seed": -1}, "loss.seed", ">= 0"),
        ({"dataset": "iris", "seed": 1.5}, "loss.seed", ">= 0"),
        ({"dataset": "iris", "x": ["sepal"]}, "loss.x", "uses all its features"),
        ({"dataset": "iris", "y": "target"}, "loss.y", "its own target"),
        ({"dataset": "iris", "task": "regression"}, "loss.task", "classification data set"),
        ({"dataset": "iris", "task": "ranking"}, "loss.task", "classification, regression"),
        ({"dataset": "iris", "standardize": "yes"}, "loss.standardize", "true or false"),
        ({"dataset": "iris", "hidden": [8, 0]}, "loss.hidden", "integer >= 1"),
        ({"dataset": "iris", "hidden": "64"}, "loss.hidden", "integer >= 1"),
        ({"dataset": "iris", "activation": "gelu"}, "loss.activation", "tanh, relu, sigmoid"),
        ({"dataset": "iris", "init_seed": -2}, "loss.init_seed", ">= 0"),
    ]


def test_every_bad_input_is_one_config_error_line(tmp_path):
    for keywords, key, fragment in bad_inputs(tmp_path):
        with pytest.raises(ConfigError) as caught:
            mlp(**keywords)
        message = str(caught.value)
        assert caught.value.key == key, (keywords, message)
        assert fragment in message and "\n" not in message, (keywords, message)


def test_a_missing_scikit_learn_names_its_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn then raises ImportError
    data_module._sklearn_source.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"^loss.dataset='iris': needs scikit-learn: pip install scikit-learn$"):
            load_dataset("iris")
    finally:
        data_module._sklearn_source.cache_clear()


def test_hidden_as_one_integer_and_no_hidden_layer():
    assert mlp("iris", hidden=8).hidden == (8,)
    assert mlp("iris", hidden=[]).dim == 4 * 3 + 3  # softmax regression; its gradients are in NETS
