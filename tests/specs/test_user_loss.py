"""A loss from the user's own module (gdexp.specs.targets, gdexp.specs.user_loss).

User modules are written into tmp_path, the folder "gdexp was started in".
"""
from __future__ import annotations

import functools
import hashlib
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gdexp.core.descent import descend
from gdexp.core.errors import ConfigError
from gdexp.core.losses import Rosenbrock
from gdexp.core.optimizers import make_optimizer
from gdexp.core.stopping import StoppingRules
from gdexp.specs.targets import check_allowed, check_kwargs, is_gdexp_target, resolve, source_sha256

jax = pytest.importorskip("jax", reason="the function form needs the jax extra (CI installs it)")
from gdexp.specs.user_loss import JaxLoss, UserLoss, probe_loss, user_loss  # noqa: E402

ROSENBROCK = """
    def rosenbrock(x):
        return (1 - x[0])**2 + 100*(x[1] - x[0]**2)**2
    rosenbrock.init = [-1.5, 2.0]
"""

# The n-D Rosenbrock and a function with transcendental parts and reductions:
# the kinds whose rounding XLA's vectorization changed with the batch size.
ND = """
    import jax.numpy as jnp

    def rosen_nd(x):
        return jnp.sum(100*(x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2)

    def wiggly(x):
        return jnp.sum(jnp.sin(x) * jnp.exp(-x**2)) + jnp.log1p(jnp.sum(x*x)) + jnp.tanh(x[0]*x[-1])
"""

BOWL = """
    import numpy as np
    from gdexp.core.losses.base import Loss

    class Bowl(Loss):
        name = "bowl"

        def __init__(self, dim=2, scale=1.0):
            self.dim, self.scale = dim, scale

        def value_and_grad(self, x, rows=None):
            return 0.5 * self.scale * np.einsum("bi,bi->b", x, x), self.scale * x

        def default_init(self):
            return np.full(self.dim, 2.0)
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """write(module, source) -> path: a module in the start folder (tmp_path, the cwd).

    Modules imported from it are forgotten afterwards, and sys.path restored,
    so the next test's module of the same name is imported afresh.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("JAX_ENABLE_X64", raising=False)

    def write(module: str, source: str) -> Path:
        path = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            if parent != Path(".") and not (tmp_path / parent / "__init__.py").exists():
                (tmp_path / parent / "__init__.py").write_text("")
        path.write_text(textwrap.dedent(source))
        return path

    yield write
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(str(tmp_path)):
            del sys.modules[name]


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text, text
    return text


def rules(n: int, maxiter: int) -> StoppingRules:
    return StoppingRules.of([dict(maxiter=maxiter, gtol=1e-8, patience=0, min_delta=0.0,
                                  divergence_factor=1e4)] * n)


# --- the JAX form -----------------------------------------------------------------------------

def test_jax_rosenbrock_matches_the_builtin_value_and_gradient(folder):
    folder("mypkg.losses", ROSENBROCK)
    loss = user_loss("mypkg.losses.rosenbrock", ".")
    assert isinstance(loss, JaxLoss)
    assert (loss.dim, loss.name, loss.param_names) == (2, "rosenbrock", ("x[0]", "x[1]"))
    np.testing.assert_array_equal(loss.default_init(), [-1.5, 2.0])
    x = np.random.default_rng(0).uniform(-2, 2, size=(50, 2))
    f, g = loss.value_and_grad(x)
    f_ref, g_ref = Rosenbrock().value_and_grad(x)
    assert f.dtype == g.dtype == np.float64
    np.testing.assert_allclose(f, f_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-10)


def test_jax_rosenbrock_gives_the_builtins_curve_over_a_descent(folder):
    folder("mypkg.losses", ROSENBROCK)
    loss = user_loss("mypkg.losses.rosenbrock", ".")
    x0 = np.tile(loss.default_init(), (3, 1))
    lrs = np.array([1e-4, 5e-4, 1e-3])
    ours = descend(loss, make_optimizer("gd", lr=lrs), x0, rules(3, 3000))
    builtin = descend(Rosenbrock(), make_optimizer("gd", lr=lrs), x0, rules(3, 3000))
    for a, b in zip(ours, builtin):
        assert (a.iterations, a.stop_reason) == (b.iterations, b.stop_reason) == (3000, "max_iters")
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
        # Coordinates cross zero: relative to the path's scale.
        np.testing.assert_allclose(a.path, b.path, rtol=1e-12, atol=1e-12 * np.abs(b.path).max())
    assert ours[2].loss[-1] < 1e-2 * ours[2].loss[0]  # it descended


@pytest.mark.parametrize("function", ["rosen_nd", "wiggly"])
@pytest.mark.parametrize("dim", [2, 3, 5, 7, 17])
def test_jax_rows_are_bit_identical_alone_and_in_any_batch(folder, function, dim):
    folder("ndpkg.fns", ND)
    loss = user_loss(f"ndpkg.fns.{function}", ".", dim=dim)
    x = np.random.default_rng(dim).normal(size=(100, dim))
    f_all, g_all = loss.value_and_grad(x)
    for B in [*range(1, 18), 33, 64, 99]:
        f, g = loss.value_and_grad(x[:B])
        np.testing.assert_array_equal(f, f_all[:B])
        np.testing.assert_array_equal(g, g_all[:B])
    for i in range(0, 100, 7):
        f, g = loss.value_and_grad(x[i:i + 1])
        assert f[0] == f_all[i] and np.array_equal(g[0], g_all[i])
    v = np.random.default_rng(1).normal(size=(100, dim))
    hv_all = loss.hvp(x, v)
    for i in range(0, 100, 13):
        np.testing.assert_array_equal(loss.hvp(x[i:i + 1], v[i:i + 1])[0], hv_all[i])


def test_jax_descent_curves_are_the_same_alone_and_in_a_shrinking_batch(folder):
    folder("ndpkg.fns", ND)
    loss = user_loss("ndpkg.fns.rosen_nd", ".", dim=3)
    lrs = np.array([1e-4, 1e-3, 4e-3, 6e-3, 1e-2])  # the last two diverge: the batch shrinks on the way
    x0 = np.tile([-1.2, 1.0, 0.5], (5, 1))
    together = descend(loss, make_optimizer("gd", lr=lrs), x0, rules(5, 400))
    assert [r.iterations for r in together] == [400, 400, 400, 5, 3]
    for i, run in enumerate(together):
        (alone,) = descend(loss, make_optimizer("gd", lr=lrs[i:i + 1]), x0[i:i + 1], rules(1, 400))
        assert (alone.iterations, alone.stop_reason) == (run.iterations, run.stop_reason)
        np.testing.assert_array_equal(alone.loss, run.loss)
        np.testing.assert_array_equal(alone.path, run.path)


def test_hvp_is_the_exact_hessian_times_v(folder):
    folder("mypkg.losses", ROSENBROCK)
    loss = user_loss("mypkg.losses.rosenbrock", ".")
    rng = np.random.default_rng(2)
    x, v = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    u, w = x[:, 0], x[:, 1]
    hessians = np.stack([np.stack([1200 * u**2 - 400 * w + 2, -400 * u], -1),
                         np.stack([-400 * u, np.full_like(u, 200.0)], -1)], -2)
    np.testing.assert_allclose(loss.hvp(x, v), np.einsum("bij,bj->bi", hessians, v), rtol=1e-12, atol=1e-9)
    h = 1e-6  # and against central differences of the gradient
    fd = (loss.grad(x + h * v) - loss.grad(x - h * v)) / (2 * h)
    np.testing.assert_allclose(loss.hvp(x, v), fd, rtol=1e-6, atol=1e-4)


def test_function_keywords_are_bound_and_checked(folder):
    folder("mypkg.losses", """
        def saddle(x, scale, tilt=0.0):
            return scale * (x[0]**2 - x[1]**2) + tilt * x[0]

        def sized(x, dim, **extra):
            return sum(x[i]**2 for i in range(dim)) * extra.get("k", 1.0)
    """)
    loss = user_loss("mypkg.losses.saddle", ".", dim=2, scale=3.0, tilt=0.5)
    f, g = loss.value_and_grad(np.array([[1.0, 2.0]]))
    np.testing.assert_array_equal(f, [3.0 * (1 - 4) + 0.5])
    np.testing.assert_array_equal(g, [[6.5, -12.0]])
    assert "loss.tlt=1.0: not a parameter of saddle; its parameters are: scale, tilt" in \
        one_line_error(user_loss, "mypkg.losses.saddle", ".", dim=2, scale=3.0, tlt=1.0)
    assert "loss.scale=None: required by saddle, has no default; set loss.scale=VALUE" in \
        one_line_error(user_loss, "mypkg.losses.saddle", ".", dim=2)
    # A function naming `dim` receives loss.dim; **extra takes any key.
    sized = user_loss("mypkg.losses.sized", ".", dim=3, k=2.0, anything="goes")
    assert sized.value(np.array([[1.0, 1.0, 1.0]]))[0] == 6.0


def test_check_kwargs_reads_classes_and_dataclasses():
    from dataclasses import dataclass

    @dataclass
    class Well:
        depth: float
        width: float = 1.0

    check_kwargs(Well, {"depth": 2.0})
    assert one_line_error(check_kwargs, Well, {"depth": 1.0, "wdth": 2}) == \
        "loss.wdth=2: not a parameter of test_check_kwargs_reads_classes_and_dataclasses.<locals>.Well; " \
        "its parameters are: depth, width"
    assert one_line_error(check_kwargs, Well, {}, "model").startswith("model.depth=None: required by")
    check_kwargs(lambda x, **kw: 0, {"any": 1, "thing": 2}, n_positional=1)


# --- the numpy form ---------------------------------------------------------------------------

def test_a_numpy_loss_subclass_works_like_the_instance_itself(folder):
    folder("npkg.losses", BOWL)
    loss = user_loss("npkg.losses.Bowl", ".", dim=3, scale=2.0)
    assert isinstance(loss, UserLoss)
    assert (loss.dim, loss.name, loss.param_names, loss.n_data) == (3, "bowl", ("x[0]", "x[1]", "x[2]"), None)
    np.testing.assert_array_equal(loss.default_init(), [2.0, 2.0, 2.0])
    assert loss.scale == 2.0  # the user's own attributes read through
    inner = loss.inner
    x0 = np.array([[1.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    ours = descend(loss, make_optimizer("gd", lr=0.1), x0, rules(2, 50))
    direct = descend(inner, make_optimizer("gd", lr=0.1), x0, rules(2, 50))
    for a, b in zip(ours, direct):
        np.testing.assert_array_equal(a.loss, b.loss)
    assert "loss.scle=2.0: not a parameter of Bowl; its parameters are: dim, scale" in \
        one_line_error(user_loss, "npkg.losses.Bowl", ".", scle=2.0)


def test_a_class_without_a_dim_parameter_keeps_its_own(folder):
    folder("npkg.fixed", """
        import numpy as np
        from gdexp.core.losses.base import Loss

        class Plane(Loss):
            dim = 2
            def value_and_grad(self, x, rows=None):
                return x[:, 0] + 2 * x[:, 1], np.tile([1.0, 2.0], (len(x), 1))
    """)
    loss = user_loss("npkg.fixed.Plane", ".", dim=2)
    np.testing.assert_array_equal(loss.default_init(), [0.0, 0.0])  # no default_init: the origin
    assert loss.name == "Plane"
    assert "loss.dim=3: npkg.fixed.Plane has dim 2, and takes no dim parameter" in \
        one_line_error(user_loss, "npkg.fixed.Plane", ".", dim=3)


# --- every bad input: one line ----------------------------------------------------------------

BAD_MODULES = {
    "raises.py": "import math\n\nRADIUS = 1 / 0\n",
    "syntax.py": "def f(x:\n    return x\n",
    "needs.py": "import notinstalled_anywhere\n",
    "things.py": textwrap.dedent("""
        import jax.numpy as jnp

        SCALE = 3.0

        class NotALoss:
            pass

        def saddle(x):
            return x[0]**2 - x[1]**2

        def nothing():
            return 1.0

        def vector(x):
            return x * 2

        def whole(x):
            return len(x)

        def twisted(x):
            return (x[0] + 1j) ** 2

        def text(x):
            return "loss"

        def failing(x):
            raise ValueError("bad scale")

        def branching(x):
            if x[0] > 0:
                return x[0]
            return -x[0]

        def logarithm(x):
            return jnp.log(x[0]) + x[1]

        def cone(x):
            return jnp.sqrt(x[0]**2 + x[1]**2)
    """),
}

# (target, keywords, what the one line says)
BAD_TARGETS = [
    ("saddle", {}, "'saddle': not a dotted path like mypkg.losses.saddle"),
    ("things/saddle.py", {}, "not a dotted path"),
    ("nopkg.saddle", {}, "module 'nopkg' not found in {folder} (the folder gdexp was started in)"),
    ("raises.f", {}, "importing raises raised ZeroDivisionError: division by zero ({folder}/raises.py, line 3)"),
    ("syntax.f", {}, "importing syntax raised SyntaxError"),
    ("syntax.f", {}, "syntax.py, line 1"),
    ("needs.f", {}, "ModuleNotFoundError: No module named 'notinstalled_anywhere' ({folder}/needs.py, line 1)"),
    ("things.sadle", {}, "module things has no attribute 'sadle'; did you mean: saddle"),
    ("things.saddle.extra", {}, "things.saddle has no attribute 'extra'"),
    ("things.SCALE", {}, "'things.SCALE': is a float, not callable"),
    ("things.NotALoss", {}, "class NotALoss is not a gdexp Loss"),
    ("things.saddle", {}, "loss.dim=None: required for a function loss (things.saddle)"),
    ("things.nothing", {"dim": 2}, "nothing() takes no parameter vector; needs f(x, **kwargs) -> scalar"),
    ("things.vector", {"dim": 2}, "vector(x) returned shape (2,), needs a scalar"),
    ("things.whole", {"dim": 2}, "whole(x) returned dtype int64, needs a float scalar"),
    ("things.twisted", {"dim": 2}, "twisted(x) returned dtype complex128, needs a float scalar"),
    ("things.text", {"dim": 2}, "text(x) returned a value of type str; needs a float scalar"),
    ("things.failing", {"dim": 2}, "failing(x) raised ValueError: bad scale ({folder}/things.py, line 28)"),
    ("things.branching", {"dim": 2}, "cannot be compiled by JAX: TracerBoolConversionError"),
    ("things.branching", {"dim": 2}, "use jnp.where, not if or float(), on values of x"),
    ("things.logarithm", {"dim": 2},
     "the loss is -inf at the start point [0.0, 0.0]: an input error, not a divergence"),
    ("things.cone", {"dim": 2}, "the gradient is nan at the start point [0.0, 0.0]"),
    ("things.saddle", {"dim": 0}, "loss.dim=0: things.saddle needs a whole number of parameters >= 1"),
]


@pytest.mark.parametrize("target, keywords, expected", BAD_TARGETS)
def test_each_bad_target_is_one_config_error_line(folder, tmp_path, target, keywords, expected):
    for name, source in BAD_MODULES.items():
        (tmp_path / name).write_text(source)
    text = one_line_error(user_loss, target, tmp_path, **keywords)
    assert expected.format(folder=tmp_path.resolve()) in text
    assert "Traceback" not in text


BAD_CLASSES = {
    "returns_list": ("return [x[:, 0], x]", "value_and_grad returned a value of type list, length 2; needs a tuple"),
    "returns_one": ("return x[:, 0]", "value_and_grad returned a value of type ndarray, shape (1,); needs a tuple"),
    "int_values": ("return np.zeros(len(x), dtype=int), x",
                   "on a (1, 2) batch returned values of dtype int64; needs float"),
    "complex_grad": ("return x[:, 0], x + 0j", "returned gradients of dtype complex128; needs float"),
    "object_values": ("return np.array([None] * len(x)), x", "returned values of dtype object; needs float"),
    "column_values": ("return x[:, :1], x", "on a (1, 2) batch returned values of shape (1, 1); needs (1,)"),
    "flat_grad": ("return x[:, 0], x[:, 0]", "returned gradients of shape (1,); needs (1, 2)"),
    "same_row": ("return x[:1, 0], x[:1]", "on a (3, 2) batch returned values of shape (1,); needs (3,)"),
    "raising": ("raise RuntimeError('no data yet')", "on a (1, 2) batch raised RuntimeError: no data yet"),
    "nan_at_start": ("return x[:, 0] * np.nan, x", "the loss is nan at the start point [0.0, 0.0]"),
}


@pytest.mark.parametrize("case", BAD_CLASSES)
def test_each_bad_loss_class_is_one_config_error_line(folder, case):
    body, expected = BAD_CLASSES[case]
    folder("badcls", f"""
        import numpy as np
        from gdexp.core.losses.base import Loss

        class Bad(Loss):
            dim = 2
            def value_and_grad(self, x, rows=None):
                {body}
    """)
    text = one_line_error(user_loss, "badcls.Bad", ".")
    assert expected in text and text.startswith("loss._target_='badcls.Bad': ")


def test_a_class_that_fails_to_build_or_start_is_one_line(folder, tmp_path):
    folder("badinit", """
        import numpy as np
        from gdexp.core.losses.base import Loss

        class Picky(Loss):
            def __init__(self, dim=2):
                if dim > 2:
                    raise ValueError("at most 2")
                self.dim = dim
            def value_and_grad(self, x, rows=None):
                return x[:, 0], x
            def default_init(self):
                return np.zeros(self.dim + 1)
    """)
    assert f"Picky(dim=3) raised ValueError: at most 2 ({tmp_path.resolve()}/badinit.py, line 8)" in \
        one_line_error(user_loss, "badinit.Picky", ".", dim=3)
    assert "its default_init() has shape (3,); needs (2,)" in one_line_error(user_loss, "badinit.Picky", ".")


def test_a_config_start_where_the_loss_is_not_finite_blames_init(folder):
    folder("logs", """
        import jax.numpy as jnp
        def logarithm(x):
            return jnp.log(x[0]) + x[1]
        logarithm.init = [1.0, 0.0]
    """)
    loss = user_loss("logs.logarithm", ".")
    probe_loss(loss, np.array([2.0, 3.0]), key="init")
    assert one_line_error(probe_loss, loss, np.array([-1.0, 3.0]), key="init") == \
        "init=[-1.0, 3.0]: the loss of logs.logarithm is nan here: an input error, not a divergence"
    assert "init=[1.0, 2.0, 3.0]: needs 2 values per start point" in \
        one_line_error(probe_loss, loss, np.array([1.0, 2.0, 3.0]), key="init")


def test_jax_missing_names_the_extra(folder, monkeypatch):
    folder("plain", """
        def bowl(x):
            return (x * x).sum()
    """)
    folder("usesjax", "import jax.numpy as jnp\n\ndef bowl(x):\n    return jnp.sum(x * x)\n")
    monkeypatch.setitem(sys.modules, "jax", None)  # what `import jax` meets when it is not installed
    text = one_line_error(user_loss, "plain.bowl", ".", dim=2)
    assert text.startswith("loss._target_='plain.bowl': a function loss is differentiated with JAX")
    assert "pip install 'gdexp[jax]'" in text
    assert "pip install 'gdexp[jax]'" in one_line_error(user_loss, "usesjax.bowl", ".", dim=2)


def test_pickled_losses_rebuild_from_their_target(folder):
    folder("mypkg.losses", ROSENBROCK)
    folder("npkg.losses", BOWL)
    x = np.array([[0.5, -0.25], [2.0, 1.0]])
    for loss in (user_loss("mypkg.losses.rosenbrock", "."), user_loss("npkg.losses.Bowl", ".", scale=3.0)):
        copy = pickle.loads(pickle.dumps(loss))
        assert type(copy) is type(loss) and copy is not loss
        assert (copy.target, copy.kwargs, copy.source_sha256) == (loss.target, loss.kwargs, loss.source_sha256)
        for a, b in zip(copy.value_and_grad(x), loss.value_and_grad(x)):
            np.testing.assert_array_equal(a, b)


def test_a_worker_in_another_folder_unpickles_from_the_start_folder(folder, tmp_path):
    folder("mypkg.losses", ROSENBROCK)
    blob = tmp_path / "loss.pkl"
    blob.write_bytes(pickle.dumps(user_loss("mypkg.losses.rosenbrock", ".")))
    elsewhere = tmp_path / "job"
    elsewhere.mkdir()
    script = ("import pickle, sys, numpy as np; loss = pickle.load(open(sys.argv[1], 'rb')); "
              "print(loss.value(np.array([[0.0, 0.0]]))[0])")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run([sys.executable, "-c", script, str(blob)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "1.0", done.stderr
    # The code changed since it was pickled: the worker refuses to run other code.
    folder("mypkg.losses", ROSENBROCK.replace("100*", "10*"))
    with pytest.raises(ConfigError, match="its source file changed after the sweep started"):
        pickle.loads(blob.read_bytes())


# --- resolve, source checksums, trust ---------------------------------------------------------

def test_resolve_prefers_the_start_folder_then_keeps_it_last_on_sys_path(folder, tmp_path):
    folder("json", "def loads(x):\n    return 'mine'\n")  # a stray json.py must not shadow the stdlib for gdexp
    import json
    folder("mine.losses", "import helper\n\ndef f(x):\n    return helper.scale * x[0]\n")
    folder("helper", "scale = 2.0\n")
    assert resolve("mine.losses.f", "loss._target_", ".").__module__ == "mine.losses"
    assert sys.path[-1] == str(tmp_path.resolve()) and str(tmp_path.resolve()) not in sys.path[:-1]
    assert json.loads("[]") == []
    # An earlier import of another package of the same name says where it came from.
    text = one_line_error(resolve, "json.dumpz", "loss._target_", ".")
    assert "did you mean: dump, dumps" in text and f"not from {tmp_path.resolve()}" in text


def test_source_sha256_follows_the_file(folder):
    path = folder("mypkg.losses", ROSENBROCK)
    function = resolve("mypkg.losses.rosenbrock", "loss._target_", ".")
    first = source_sha256(function)
    assert first == hashlib.sha256(path.read_bytes()).hexdigest() == source_sha256(functools.partial(function))
    path.write_text(path.read_text() + "\n# tuned\n")
    assert source_sha256(resolve("mypkg.losses.rosenbrock", "loss._target_", ".")) != first
    assert source_sha256(len) is None
    assert source_sha256(Rosenbrock) == hashlib.sha256(
        Path(sys.modules["gdexp.core.losses.classic"].__file__).read_bytes()).hexdigest()


@pytest.mark.parametrize("path, trusted", [
    ("gdexp.core.losses.Rosenbrock", True),
    ("gdexp.core.losses.classic.Rosenbrock", True),
    ("gdexp.core.losses.linear_regression", True),
    ("gdexp.core.optimizers.make_optimizer", True),
    ("gdexp.core.losses.base.np.save", False),      # numpy's, reached through a gdexp module
    ("gdexp.specs.targets.importlib.import_module", False),
    ("gdexp.specs.targets.resolve", False),           # imports what its arguments name
    ("gdexp.specs.user_loss.user_loss", False),
    ("gdexp.core.losses.classic._check_dim", False),
    ("gdexp.core.losses.Rosenbrok", False),
    ("gdexp.cli.main", False),                       # outside the numpy core
    ("mypkg.losses.saddle", False),
])
def test_is_gdexp_target(path, trusted):
    assert is_gdexp_target(path) is trusted


def test_check_allowed_refuses_and_allows_as_documented():
    key = "loss._target_"
    assert one_line_error(check_allowed, "mypkg.losses.saddle", [], key) == (
        "loss._target_='mypkg.losses.saddle': a stored config naming code outside gdexp; "
        "it is imported only if you trust it: pass --allow-module mypkg")
    check_allowed("mypkg.losses.saddle", ["mypkg"], key)
    check_allowed("mypkg.losses.saddle", ["mypkg.losses"], key)
    check_allowed("gdexp.core.losses.Rosenbrock", [], key)
    assert "--allow-module mypkg" in one_line_error(check_allowed, "mypkg.other.f", ["mypkg.losses"], key)
    assert "--allow-module mypkgx" in one_line_error(check_allowed, "mypkgx.f", ["mypkg"], key)
    assert "not a class or function of gdexp.core" in \
        one_line_error(check_allowed, "gdexp.core.losses.base.np.save", [], key)
    assert "not a dotted path" in one_line_error(check_allowed, "os", [], key)
    assert "--allow-module='my-pkg': not a module name" in one_line_error(check_allowed, "a.b", ["my-pkg"], key)


def test_check_allowed_never_imports_a_module_it_refuses(folder, tmp_path):
    folder("evil", """
        from pathlib import Path
        Path("pwned.txt").write_text("imported")

        def loss(x):
            return 0.0
    """)
    assert "--allow-module evil" in one_line_error(check_allowed, "evil.loss", [], "loss._target_")
    check_allowed("evil.loss", ["evil"], "loss._target_")  # allowed: still imports nothing
    assert not (tmp_path / "pwned.txt").exists() and "evil" not in sys.modules
    resolve("evil.loss", "loss._target_", ".")  # the test would see an import
    assert (tmp_path / "pwned.txt").read_text() == "imported"
