"""loss=torch, a user's network: every optimizer and schedule against torch's own training loop, the
one-line refusals, mini-batches and evaluations, sharpness by exact HVPs, and the CLI end to end
(MLflow records, rerun, a report with val_accuracy)."""
from __future__ import annotations

import os
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="loss=torch needs the torch extra (CI installs the CPU wheel)")

from gdexp.core.data import load_dataset  # noqa: E402
from gdexp.core.descent import Options, descend  # noqa: E402
from gdexp.core.errors import ConfigError  # noqa: E402
from gdexp.specs.torch_loss import torch_module  # noqa: E402
from gdexp.core.minibatch import MinibatchSampler  # noqa: E402
from gdexp.core.optimizers import make_optimizer  # noqa: E402
from gdexp.core.schedules import make_schedule  # noqa: E402
from gdexp.core.stopping import StoppingRules  # noqa: E402
from test_schedules import DESCENT_SCHEDULES, OPTIMIZER_CASES, PAIRS, _torch_optimizer, _torch_scheduler  # noqa: E402

NET = """
    import numpy as np
    import torch

    def model():
        return torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def reg_model():
        return torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def conv():
        return torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8, 8)), torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                                   torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10))

    def data():
        rng = np.random.default_rng(0)
        X = rng.normal(size=(120, 30))
        return X, (X[:, 0] + 0.3 * X[:, 1] > 0).astype(np.int64), X[:40] + 0.1, (X[:40, 0] > 0).astype(np.int64)

    def regression():
        rng = np.random.default_rng(1)
        X = torch.tensor(rng.normal(size=(80, 30)))
        return X, X[:, :1] * 2.0

    def not_a_module():
        return [torch.nn.Linear(2, 2)]

    def wrong_width():
        return torch.nn.Linear(7, 2)

    def vector_criterion(pred, target):
        return torch.nn.functional.cross_entropy(pred, target, reduction="none")

    def three_parts():
        return np.zeros((4, 30)), np.zeros(4), np.zeros(4)

    def val_features():  # a validation part of 29 features for a model of 30
        X, y, Xv, yv = data()
        return X, y, Xv[:, :29], yv

    def val_classes():  # a class the model's 2 outputs do not have, in the validation part only
        X, y, Xv, yv = data()
        return X, y, Xv, np.where(np.arange(len(yv)) == 30, 7, yv)

    def train_classes():  # ... and in the training part, far from its first rows
        X, y, Xv, yv = data()
        return X, np.where(np.arange(len(y)) == 100, -1, y), Xv, yv

    def dropout():
        return torch.nn.Sequential(torch.nn.Linear(30, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
"""
STEPS = 200
SEEDS = (0, 3)
BATCH = 64
# benchmarks/gpu_check.sh runs the equality tests on cuda with GDEXP_TORCH_DEVICE=cuda.
DEVICE = os.environ.get("GDEXP_TORCH_DEVICE", "cpu")


@pytest.fixture
def mynet(tmp_path, monkeypatch):
    """mynet/net.py in a start folder, forgotten afterwards (the next test imports it anew)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "mynet").mkdir()
    (tmp_path / "mynet" / "__init__.py").write_text("")
    (tmp_path / "mynet" / "net.py").write_text(textwrap.dedent(NET))
    yield tmp_path
    for name in [n for n in sys.modules if n == "mynet" or n.startswith("mynet.")]:
        del sys.modules[name]


def _rules(n, maxiter=STEPS):
    return StoppingRules.of([dict(maxiter=maxiter, gtol=0.0, patience=0, min_delta=0.0,
                                  divergence_factor=float("inf"))] * n)


def _starts(build, seeds, dtype=torch.float64):
    """Each run's start by the contract: torch.manual_seed(s); model()."""
    rows = []
    for s in seeds:
        torch.manual_seed(s)
        rows.append(torch.nn.utils.parameters_to_vector(build().to(dtype).parameters()).detach().double().numpy())
    return np.stack(rows)


def _ours(loss, opt_name, hyper, sched_name, values, x0, lrs, steps=STEPS):
    opt = make_optimizer(opt_name, **{**hyper, "lr": np.asarray(lrs)})
    rules = _rules(len(lrs), steps)
    schedule = make_schedule(sched_name, maxiter=rules.maxiter, **values)
    return descend(loss, opt, x0, rules, Options(schedule=schedule, batch_size=BATCH,
                                                  seeds=np.array(SEEDS[:len(lrs)]), eval_every=0))


def _torch_loop(build, X, y, opt_name, hyper, sched_name, values, seed, dtype=torch.float64, steps=STEPS):
    """The plain training loop gdexp must equal: one model, torch.optim, lr_scheduler, the same batches."""
    torch.manual_seed(seed)
    m = build().to(dtype=dtype, device=DEVICE)
    X, y = X.to(DEVICE), y.to(DEVICE)
    opt = _torch_optimizer(torch, opt_name, m.parameters(), hyper)
    sched = _torch_scheduler(torch, sched_name, opt, values, steps)
    sampler = MinibatchSampler(len(y), BATCH, [seed])
    losses = []
    for t in range(steps + 1):
        idx = torch.tensor(sampler.at(t)[0], device=DEVICE)
        loss = torch.nn.functional.cross_entropy(m(X[idx]), y[idx])
        losses.append(loss.item())
        if t == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    return np.array(losses), torch.nn.utils.parameters_to_vector(m.parameters()).detach().double().cpu().numpy()


@pytest.fixture(scope="module")
def breast_cancer_net(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bc")
    (folder / "bcnet").mkdir()
    (folder / "bcnet" / "__init__.py").write_text("")
    (folder / "bcnet" / "net.py").write_text(textwrap.dedent(NET))
    sys.path.insert(0, str(folder))
    try:
        loss = torch_module(model="bcnet.net.model", dataset="breast_cancer", dtype="float64", init_seed=0,
                            device=DEVICE, search_dir=str(folder))
        import bcnet.net

        yield loss, bcnet.net.model
    finally:
        sys.path.remove(str(folder))


@pytest.mark.parametrize("opt_name, sched_name, values", PAIRS,
                         ids=[f"{o}-{s}{'-cycled' if v.get('cycle_momentum') else ''}" for o, s, v in PAIRS])
def test_every_run_equals_torchs_own_training_loop(breast_cancer_net, opt_name, sched_name, values):
    """Two runs of one batch (their own lr, seed, start and batches) against torch.optim +
    lr_scheduler on one model each, at each of 200 mini-batch steps, float64, to 1e-10 relative."""
    loss, build = breast_cancer_net
    data = load_dataset("breast_cancer")
    X, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    hyper = OPTIMIZER_CASES[opt_name]
    lrs = [hyper["lr"], hyper["lr"] / 3]
    results = _ours(loss, opt_name, hyper, sched_name, values, _starts(build, SEEDS), lrs)
    for r, seed, lr in zip(results, SEEDS, lrs):
        ref_losses, ref_x = _torch_loop(build, X, y, opt_name, {**hyper, "lr": lr}, sched_name, values, seed)
        assert r.iterations == STEPS and r.stop_reason == "max_iters"
        np.testing.assert_allclose(r.loss, ref_losses, rtol=1e-10, atol=0)
        np.testing.assert_allclose(r.x, ref_x, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("opt_name", ["gd", "momentum", "adam"])
def test_float32_runs_equal_torchs_loop_to_1e_4(breast_cancer_net, opt_name):
    _, build = breast_cancer_net
    loss = torch_module(model="bcnet.net.model", dataset="breast_cancer", dtype="float32", init_seed=0,
                        device=DEVICE, search_dir=None)
    data = load_dataset("breast_cancer")
    X, y = torch.tensor(data.x_train, dtype=torch.float32), torch.tensor(data.y_train)
    hyper = OPTIMIZER_CASES[opt_name]
    results = _ours(loss, opt_name, hyper, "constant", {}, _starts(build, SEEDS[:1], torch.float32), [hyper["lr"]],
                    steps=50)
    ref_losses, _ = _torch_loop(build, X, y, opt_name, hyper, "constant", {}, SEEDS[0], torch.float32, steps=50)
    np.testing.assert_allclose(results[0].loss, ref_losses, rtol=1e-4)


def test_the_start_is_the_seeded_model_and_x_stays_a_tensor(mynet):
    loss = torch_module(model="mynet.net.model", data="mynet.net.data", dtype="float64", init_seed=7,
                        search_dir=str(mynet))
    import mynet.net

    np.testing.assert_array_equal(loss.default_init(), _starts(mynet.net.model, [7])[0])
    assert loss.dim == 30 * 16 + 16 + 16 * 2 + 2 and loss.n_data == 120 and loss.n_val == 40
    x = loss.as_params(np.stack([loss.default_init()] * 2))
    f, g = loss.value_and_grad(x)
    assert isinstance(f, torch.Tensor) and f.shape == (2,) and g.shape == (2, loss.dim)
    host_f, host_g = loss.value_and_grad(np.stack([loss.default_init()] * 2))
    assert isinstance(host_f, np.ndarray) and host_f.dtype == np.float64
    np.testing.assert_array_equal(host_g, g.numpy())


def test_a_row_is_the_same_alone_or_in_a_batch(mynet):
    loss = torch_module(model="mynet.net.model", data="mynet.net.data", dtype="float64", init_seed=0,
                        search_dir=str(mynet))
    x = loss.default_init() + np.random.default_rng(0).normal(scale=0.1, size=(5, loss.dim))
    f, g = loss.value_and_grad(x)
    for i in range(5):
        fi, gi = loss.value_and_grad(x[i:i + 1])
        np.testing.assert_allclose(fi, f[i:i + 1], rtol=1e-14)
        np.testing.assert_allclose(gi, g[i:i + 1], rtol=1e-12, atol=1e-15)


def test_rows_drawing_one_mini_batch_share_it_and_equal_rows_drawing_their_own(mynet):
    """One seed for a whole sweep: every row draws the same batch, computed once against the stacked
    weights (a conv's one input, not B groups). The same rows beside a row with its own batch (each
    row gathered on its own) give the same values and gradients, and a conv net too."""
    for model in ("mynet.net.model", "mynet.net.conv"):
        data = dict(data="mynet.net.data") if model.endswith("model") else dict(dataset="digits")
        loss = torch_module(model=model, **data, dtype="float64", init_seed=0, device=DEVICE, search_dir=str(mynet))
        x = loss.default_init() + np.random.default_rng(0).normal(scale=0.1, size=(3, loss.dim))
        rng = np.random.default_rng(1)
        batch = rng.choice(loss.n_data, 16, replace=False)
        rows = np.stack([batch, batch, rng.choice(loss.n_data, 16, replace=False)])
        shared_f, shared_g = loss.value_and_grad(x[:2], rows[:2])
        own_f, own_g = loss.value_and_grad(x, rows)
        np.testing.assert_allclose(shared_f, own_f[:2], rtol=1e-13)
        np.testing.assert_allclose(shared_g, own_g[:2], rtol=1e-11, atol=1e-14)
        f2, g2 = loss.value_and_grad(x[2:], rows[2:])
        np.testing.assert_allclose(f2, own_f[2:], rtol=1e-13)
        assert not np.allclose(own_f[0], own_f[2])  # the third row's batch is another


def test_gradient_matches_central_differences(mynet):
    loss = torch_module(model="mynet.net.reg_model", data="mynet.net.regression", criterion="mse", dtype="float64",
                        init_seed=0, search_dir=str(mynet))
    x = loss.default_init()[None]
    _, g = loss.value_and_grad(x)
    rng = np.random.default_rng(0)
    for _ in range(3):
        d = rng.normal(size=loss.dim)
        h = 1e-6
        fd = (loss.value(x + h * d) - loss.value(x - h * d)) / (2 * h)
        assert fd[0] == pytest.approx(g[0] @ d, rel=1e-6)


def test_evaluations_give_val_loss_and_val_accuracy(mynet):
    loss = torch_module(model="mynet.net.model", data="mynet.net.data", dtype="float64", init_seed=0,
                        search_dir=str(mynet))
    import mynet.net

    X, y, Xv, yv = (torch.as_tensor(a) for a in mynet.net.data())
    results = descend(loss, make_optimizer("adam", lr=np.array([0.01, 0.03])), _starts(mynet.net.model, [0, 0]),
                      _rules(2, 30), Options(batch_size=32, seeds=np.array([0, 1]), eval_every=10))
    for r in results:
        steps, val = r.events["val_accuracy"]
        assert steps.tolist() == [0, 10, 20, 30]
        m = mynet.net.model().double()
        torch.nn.utils.vector_to_parameters(torch.tensor(r.x), m.parameters())
        with torch.no_grad():
            logits = m(Xv)
        assert val[-1] == pytest.approx((logits.argmax(1) == yv).double().mean().item(), abs=0)
        assert r.events["val_loss"][1][-1] == pytest.approx(
            torch.nn.functional.cross_entropy(logits, yv).item(), rel=1e-12)


def test_sharpness_uses_exact_hessian_vector_products(mynet):
    loss = torch_module(model="mynet.net.reg_model", data="mynet.net.regression", criterion="mse", dtype="float64",
                        init_seed=0, search_dir=str(mynet))
    x = loss.default_init()[None]
    w = torch.tensor(x[0], requires_grad=True)
    import mynet.net

    X, y = mynet.net.regression()
    m = mynet.net.reg_model().double()

    def f(v):
        params = {}
        start = 0
        for name, p in m.named_parameters():
            params[name] = v[start:start + p.numel()].view(p.shape)
            start += p.numel()
        pred = torch.func.functional_call(m, params, (X,))
        return torch.nn.functional.mse_loss(pred[:, 0], y[:, 0])

    H = torch.autograd.functional.hessian(f, w.detach()).numpy()
    v = np.random.default_rng(0).normal(size=(1, loss.dim))
    np.testing.assert_allclose(loss.hvp(x, v), (H @ v[0])[None], rtol=1e-9, atol=1e-12)
    results = descend(loss, make_optimizer("gd", lr=np.array([0.01])), x, _rules(1, 4),
                      Options(sharpness_every=2))
    steps, lam = results[0].events["sharpness"]
    assert steps.tolist() == [0, 2, 4]
    # Lanczos (20 products at most) on a near cluster: a lower bound within 1e-4; the products are exact above
    assert lam[0] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-4) and lam[0] <= np.linalg.eigvalsh(H)[-1] * (1 + 1e-12)


def test_a_diverging_run_stops_alone_with_the_step_and_point_it_diverged_at(mynet):
    loss = torch_module(model="mynet.net.reg_model", data="mynet.net.regression", criterion="mse", dtype="float64",
                        init_seed=0, search_dir=str(mynet))
    x0 = np.stack([loss.default_init()] * 2)
    rules = StoppingRules.of([dict(maxiter=100, gtol=0.0, patience=0, min_delta=0.0, divergence_factor=1e4)] * 2)
    fine, blown = descend(loss, make_optimizer("gd", lr=np.array([0.01, 5.0])), x0, rules)
    assert fine.stop_reason == "max_iters" and fine.iterations == 100
    assert blown.status == "diverged" and blown.iterations < 100
    assert len(blown.loss) == blown.iterations + 1
    # the point it stopped at is the step's own (kept on the device for the block), not the block's end
    assert loss.value(blown.x[None])[0] == pytest.approx(blown.loss[-1], rel=1e-12) or not np.isfinite(blown.loss[-1])


# ---- refusals: one line each, before any run ----

@pytest.mark.parametrize("kwargs, line", [
    (dict(model="mynet.net.not_a_model"), "loss.model='mynet.net.not_a_model': module mynet.net has no attribute"),
    (dict(model="???"), "loss.model='???': is required: give loss.model=mypkg.module.name"),
    (dict(model="mynet.net.not_a_module"), "loss.model='mynet.net.not_a_module': model() returned a list, "
                                           "not a torch.nn.Module"),
    (dict(model="mynet.net.wrong_width"), "loss.data='mynet.net.data': model(X_train[:2]) with X_train of shape "
                                          "(120, 30) raised RuntimeError"),
    (dict(criterion="mynet.net.vector_criterion"), "loss.criterion='mynet.net.vector_criterion': criterion(pred, "
                                                   "target) returned a Tensor of shape (2,); needs a float scalar"),
    (dict(data="mynet.net.regression", criterion="mse"), "loss.data='mynet.net.regression': model(X_train[:2]) has "
                                                         "shape (2, 2) but y_train[:2] (2, 1): mse needs one output"),
    (dict(data="mynet.net.three_parts"), "loss.data='mynet.net.three_parts': data() returned a tuple; needs (X, y)"),
    (dict(model="mynet.net.dropout"), "loss.model='mynet.net.dropout': cannot be stacked with torch.func.vmap"),
    (dict(dtype="float16"), "loss.dtype='float16': choose one of: float32, float64"),
    (dict(criterion="hinge"), "loss.criterion='hinge': choose one of: cross_entropy, mse"),
    (dict(data=None), "loss.data=None: give loss.data"),
    (dict(dataset="digits"), "loss.data='mynet.net.data': give loss.data"),
    (dict(data="mynet.net.val_features"), "loss.data='mynet.net.val_features': model(X_val[:2]) with X_val of "
                                          "shape (40, 29) raised RuntimeError"),
    (dict(data="mynet.net.val_classes"), "loss.data='mynet.net.val_classes': y_val holds class 7, but the model "
                                         "has 2 outputs (classes 0..1)"),
    (dict(data="mynet.net.train_classes"), "loss.data='mynet.net.train_classes': y_train holds class -1, but the "
                                           "model has 2 outputs (classes 0..1)"),
])
def test_what_does_not_fit_is_one_line(mynet, kwargs, line):
    """Refused before any run, in one line, and nothing else said (no warning of torch's on the way)."""
    import warnings

    args = {**dict(model="mynet.net.model", data="mynet.net.data", init_seed=0, search_dir=str(mynet)), **kwargs}
    with pytest.raises(ConfigError) as error, warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        torch_module(**args)
    assert not said, [str(w.message) for w in said]
    assert str(error.value).startswith(line), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA runs it")
def test_cuda_where_there_is_none_is_one_line(mynet):
    with pytest.raises(ConfigError, match=r"^loss.device='cuda': torch sees no CUDA device here"):
        torch_module(model="mynet.net.model", data="mynet.net.data", device="cuda", init_seed=0,
                     search_dir=str(mynet))


# ---- the command line end to end: MLflow records, rerun, report ----

def test_a_sweep_is_recorded_rerun_and_reported_with_val_accuracy(gdexp, mynet, capsys):
    from mlflow import MlflowClient

    from gdexp.commands.report import main as report
    from gdexp.commands.rerun import main as rerun

    code, out, err = gdexp("-m", "loss=torch", "loss.model=mynet.net.model", "loss.data=mynet.net.data",
                           "loss.batch_size=32", "loss.dtype=float64", "optimizer=adam",
                           "optimizer.lr=0.001,0.01,0.1", "seed=0,1", "stopping.maxiter=40", "tracking.eval_every=10")
    assert code == 0, err
    assert "Launching 6 jobs: descent in 1 vectorized batch(es)" in out + err  # seeds too: rows of one batch
    cl = MlflowClient()
    runs = [r for r in cl.search_runs(["1"]) if r.data.tags.get("gdexp.sweep") != "true"]
    assert len(runs) == 6
    from gdexp.specs.targets import source_sha256
    from mynet import net as user_net

    for r in runs:
        assert r.data.tags["gdexp.source_sha256"] == source_sha256(user_net.model)
        assert r.data.params["loss.model"] == "mynet.net.model" and r.data.params["loss.name"] == "torch"
        assert [m.step for m in cl.get_metric_history(r.info.run_id, "val_accuracy")] == [0, 10, 20, 30, 40]
    # each run's first loss is its seed's model's on its seed's first mini-batch, by torch alone
    X, y, _, _ = (torch.as_tensor(a) for a in user_net.data())
    for r in runs:
        seed = int(r.data.params["seed"])
        torch.manual_seed(seed)
        m = user_net.model().double()
        idx = torch.tensor(MinibatchSampler(len(y), 32, [seed]).at(0)[0])
        first = torch.nn.functional.cross_entropy(m(X[idx]), y[idx]).item()
        assert cl.get_metric_history(r.info.run_id, "loss")[0].value == pytest.approx(first, rel=1e-12)
    capsys.readouterr()
    run_id = runs[0].info.run_id
    assert rerun([run_id]) == 1  # user code in a stored config: trusted only when allowed
    assert "loss.model='mynet.net.model': a stored config naming code outside gdexp" in capsys.readouterr().out
    assert rerun([run_id, "--allow-module", "mynet"]) == 0
    assert "identical (41 steps)" in capsys.readouterr().out
    assert report([]) == 0
    (md,) = list(mynet.glob("reports/*/report.md"))
    text = md.read_text()
    assert "val accuracy" in text and "best_lr=" in text


def test_bad_input_on_the_command_line_is_one_line_and_records_nothing(gdexp, mynet):
    code, out, err = gdexp("loss=torch", "loss.model=mynet.net.not_a_module", "loss.data=mynet.net.data",
                           "stopping.maxiter=5")
    assert code == 2 and err.strip().splitlines() == [
        "gdexp: error: loss.model='mynet.net.not_a_module': model() returned a list, not a torch.nn.Module"]
    assert not (mynet / "mlflow.db").exists()


def test_the_readme_example_is_the_example_package():
    """The docs' *Your own network* shows examples/mynet/net.py's model() and data(), verbatim."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    section = (root / "docs" / "own-network.md").read_text()
    block = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 9)]
    example = (root / "examples" / "mynet" / "net.py").read_text()
    for part in block.split("\n\n"):
        if part.strip() and not part.strip().startswith("#"):
            assert part.strip() in example, part


def test_a_convolutional_net_equals_torchs_loop(mynet):
    """Conv2d under vmap: 60 Adam steps on digits' 8x8 images, float64, every step to 1e-10."""
    loss = torch_module(model="mynet.net.conv", dataset="digits", dtype="float64", init_seed=0, device=DEVICE,
                        search_dir=str(mynet))
    from mynet import net as user_net

    data = load_dataset("digits")
    X, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    hyper = OPTIMIZER_CASES["adam"]
    results = _ours(loss, "adam", hyper, "constant", {}, _starts(user_net.conv, SEEDS[:1]), [0.01], steps=60)
    ref_losses, ref_x = _torch_loop(user_net.conv, X, y, "adam", {**hyper, "lr": 0.01}, "constant", {}, SEEDS[0],
                                    steps=60)
    np.testing.assert_allclose(results[0].loss, ref_losses, rtol=1e-10, atol=0)
    np.testing.assert_allclose(results[0].x, ref_x, rtol=1e-10, atol=1e-13)
