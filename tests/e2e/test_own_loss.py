"""A user's own loss end to end: the real CLI in-process, a real SQLite store, the user's module in
the folder gdexp starts in; the JAX function form, a numpy Loss class, a formula; gdexp.run/sweep."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from gdexp.core.losses import Rosenbrock

jax = pytest.importorskip("jax", reason="the function form needs the jax extra (CI installs it)")
from test_user_loss import BOWL  # noqa: E402

FUNCTIONS = """
    import jax.numpy as jnp

    def saddle(x, scale=1.0):
        # a double well along x[1]: minima at (0, -1) and (0, 1), where it is -scale/4
        return scale * (x[0]**2 - 0.5 * x[1]**2 + 0.25 * x[1]**4)
    saddle.init = [1.0, 0.1]

    SCALE = 3.0

    def vector(x):
        return x * 2.0

    def whole(x):
        return len(x)

    def two_args(x, y):
        return jnp.sum(x) + y
"""
# Bowl(dim=2, scale=1.0): 0.5 scale |x|^2 from (2, ..., 2), the numpy class form.
MODULE = textwrap.dedent(FUNCTIONS) + textwrap.dedent(BOWL)


@pytest.fixture
def mypkg(store, tmp_path, monkeypatch):
    """mypkg/losses.py in the start folder (tmp_path); forgotten afterwards so the next test imports it anew."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("JAX_ENABLE_X64", raising=False)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "losses.py").write_text(MODULE)
    yield tmp_path / "mypkg" / "losses.py"
    for name in [n for n in sys.modules if n == "mypkg" or n.startswith("mypkg.")]:
        del sys.modules[name]


@pytest.fixture
def fresh_workers():
    """joblib's loky workers started for this test alone. loky reuses its worker processes from one
    Parallel call to the next, with the environment they were started with, so a second joblib
    sweep in one process would hand its jobs the first sweep's MLFLOW_TRACKING_URI and parent run
    (test_a_second_joblib_sweep_in_one_process_records_in_its_own_store)."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    yield
    get_reusable_executor().shutdown(wait=True)


JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def runs_of(store):
    cl = MlflowClient(store)
    found = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    return cl, [r for r in found if r.data.tags.get("gdexp.sweep") != "true"]


def curve(cl, run) -> pd.DataFrame:
    return pd.read_parquet(cl.download_artifacts(run.info.run_id, "curve.parquet"))


@pytest.mark.parametrize("launcher", [[], JOBLIB], ids=["batched", "joblib"])
def test_a_jax_function_from_the_start_folder(gdexp, store, mypkg, launcher, fresh_workers):
    code, out, err = gdexp("-m", "loss=custom", "loss._target_=mypkg.losses.saddle", "loss.dim=2",
                           "+loss.scale=3", "optimizer.lr=0.01,0.1", "stopping.gtol=1e-9", *launcher)
    assert code == 0, err
    cl, runs = runs_of(store)
    assert sorted(r.info.run_name for r in runs) == ["saddle-gd-lr=0.01", "saddle-gd-lr=0.1"]
    for run in runs:
        assert run.data.params["loss._target_"] == "mypkg.losses.saddle" and run.data.params["loss.scale"] == "3"
        assert run.data.tags["gdexp.status"] == "converged"
        assert run.data.tags["gdexp.source_sha256"] == __import__("hashlib").sha256(mypkg.read_bytes()).hexdigest()
        assert run.data.metrics["final_loss"] == pytest.approx(-0.75, abs=1e-12)  # 3 * (-1/2 + 1/4)
        c = curve(cl, run)
        assert list(c.columns[3:]) == ["x[0]", "x[1]"] and c["x[1]"].iloc[-1] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("launcher", [[], JOBLIB], ids=["batched", "joblib"])
def test_a_numpy_loss_class_gives_its_closed_form_curve(gdexp, store, mypkg, launcher, fresh_workers):
    code, out, err = gdexp("-m", "loss=custom", "loss._target_=mypkg.losses.Bowl", "loss.dim=3", "+loss.scale=2",
                           "optimizer.lr=0.1,1.5", "stopping.maxiter=50", "stopping.gtol=0", *launcher)
    assert code == 0, err
    cl, runs = runs_of(store)
    by_lr = {float(r.data.params["optimizer.lr"]): r for r in runs}
    # gd on 0.5 s |x|^2 from (2, 2, 2): x_k = (1 - lr s)^k x_0, loss_k = 0.5 s 12 (1 - lr s)^(2k)
    k = np.arange(51)
    np.testing.assert_allclose(curve(cl, by_lr[0.1])["loss"], 12.0 * 0.8 ** (2 * k), rtol=1e-12)
    assert by_lr[1.5].data.tags["gdexp.status"] == "diverged"  # |1 - 3| = 2 > 1
    assert "bowl-gd-lr=1.5" in out and "diverged (step" in out and "runs=2, diverged=1, failed=0" in out


def test_a_second_joblib_sweep_in_one_process_records_in_its_own_store(gdexp, tmp_path, monkeypatch,
                                                                      fresh_workers):
    from cli_runner import store_in

    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        with store_in(tmp_path / name) as uri:
            code, _, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.02", "stopping.maxiter=20", *JOBLIB)
            assert code == 0, err
            assert len(runs_of(uri)[1]) == 2, name


def test_a_formula_typed_as_in_the_issue_descends_like_the_builtin(gdexp, store):
    # The shell takes the quotes of loss.expr='(1 - x)**2 + 100*(y - x**2)**2' off; this is what gdexp gets.
    code, out, err = gdexp("loss=expression", "loss.expr=(1 - x)**2 + 100*(y - x**2)**2", "init=[-1.5,2]",
                           "optimizer.lr=0.001", "stopping.maxiter=300")
    assert code == 0, err
    code, _, err = gdexp("loss=rosenbrock", "optimizer.lr=0.001", "stopping.maxiter=300")
    assert code == 0, err
    cl, runs = runs_of(store)
    by = {r.data.params["loss.name"]: curve(cl, r) for r in runs}
    formula, builtin = by["expression"], by["rosenbrock"]
    np.testing.assert_allclose(formula["loss"], builtin["loss"], rtol=1e-12)
    assert list(formula.columns[3:]) == ["x", "y"]
    assert Rosenbrock().value(np.array([[-1.5, 2.0]]))[0] == pytest.approx(formula["loss"][0], rel=1e-15)


def test_the_python_api_runs_and_sweeps_a_users_loss(store, mypkg):
    import gdexp

    row = gdexp.run(["loss=custom", "loss._target_=mypkg.losses.Bowl", "optimizer.lr=0.5", "stopping.maxiter=40"])
    assert row["status"] == "converged" and row["run_name"] == "bowl-gd-lr=0.5"
    table = gdexp.sweep(["loss=custom", "loss._target_=mypkg.losses.saddle", "loss.dim=2", "optimizer.lr=0.05,0.1",
                         "seed=0,1"])
    assert len(table) == 4 and set(table["loss._target_"]) == {"mypkg.losses.saddle"}
    cells = gdexp.load_runs(sweep=table["sweep_id"][0], aggregate=True)
    assert cells["lr"].tolist() == [0.05, 0.1] and cells["runs"].tolist() == [2, 2]
    assert cells["final_loss_std"].tolist() == [0.0, 0.0]  # the function has no randomness: seeds agree


# Each bad input of issue 11 section 1: one line, exit 2, before any MLflow run.
BAD = [
    (["loss._target_=nopkg.losses.saddle"], "loss._target_='nopkg.losses.saddle': module 'nopkg' not found in"),
    (["loss._target_=mypkg.losses.sadle"],
     "loss._target_='mypkg.losses.sadle': module mypkg.losses has no attribute 'sadle'; did you mean: saddle"),
    (["loss._target_=mypkg.losses.SCALE"], "loss._target_='mypkg.losses.SCALE': is a float, not callable"),
    (["loss._target_=mypkg.losses.saddle", "loss.dim=2", "+loss.tilt=1"],
     "loss.tilt=1: not a parameter of saddle; its parameters are: scale"),
    (["loss._target_=mypkg.losses.two_args", "loss.dim=2"],
     "loss.y=None: required by two_args, has no default; set loss.y=VALUE"),
    (["loss._target_=mypkg.losses.vector", "loss.dim=2"], "vector(x) returned shape (2,), needs a scalar"),
    (["loss._target_=mypkg.losses.whole", "loss.dim=2"], "whole(x) returned dtype int64, needs a float scalar"),
]


@pytest.mark.parametrize("args, expected", BAD, ids=["not-found", "attribute", "not-callable", "signature",
                                                      "required", "non-scalar", "non-float"])
def test_each_bad_target_is_one_line_before_any_run(gdexp, store, mypkg, args, expected):
    code, out, err = gdexp("loss=custom", *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gdexp: error: ") and expected in err, err
    assert runs_of(store)[1] == []


def test_jax_missing_names_the_extra_before_any_run(gdexp, store, tmp_path, monkeypatch):
    (tmp_path / "plainloss.py").write_text("def bowl(x):\n    return (x * x).sum()\n")
    monkeypatch.setitem(sys.modules, "jax", None)  # what `import jax` meets when it is not installed
    try:
        code, out, err = gdexp("loss=custom", "loss._target_=plainloss.bowl", "loss.dim=2")
    finally:
        sys.modules.pop("plainloss", None)
    assert code == 2 and err.count("\n") == 1
    assert "a function loss is differentiated with JAX, which is not installed: pip install 'gdexp[jax]'" in err
    assert runs_of(store)[1] == []
