"""loss=expression: a formula parsed against a whitelist, never evaluated, with sympy's exact gradients."""
from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gdexp.core.descent import descend
from gdexp.core.errors import ConfigError
from gdexp.core.losses import Booth, Rosenbrock
from gdexp.core.losses.expression import FUNCTIONS, MAX_CHARS, MAX_DEPTH, Expression, expression
from gdexp.core.optimizers import make_optimizer
from gdexp.core.stopping import StoppingRules

ROSENBROCK = "(1 - x)**2 + 100*(y - x**2)**2"
# Every function and operator of the whitelist, with points outside some domains.
EVERYTHING = ("sin(x)*cos(y) + tan(x/3) - exp(-x**2)/2 + log(1 + y**2) + sqrt(abs(x*y))"
              " + tanh(x)*sinh(y/2)/cosh(x) + abs(x)**1.5 + (x + 2)**y - +pi*x + log(y) + sqrt(x)")


def _rules(n: int, maxiter: int) -> StoppingRules:
    return StoppingRules.of([dict(maxiter=maxiter, gtol=0.0, patience=0, min_delta=0.0,
                                  divergence_factor=1e4)] * n)


def test_rosenbrock_formula_descends_like_the_builtin():
    lrs = np.array([1e-4, 3e-4, 1e-3, 1.5e-3])
    x0 = np.tile([-1.5, 2.0], (len(lrs), 1))
    optimizer = make_optimizer("gd", lr=lrs)
    ours = descend(expression(ROSENBROCK), optimizer, x0, _rules(len(lrs), 5000))
    builtin = descend(Rosenbrock(), optimizer, x0, _rules(len(lrs), 5000))
    for a, b in zip(ours, builtin):
        assert (a.status, a.stop_reason, a.iterations) == (b.status, b.stop_reason, 5000)
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12, atol=0)
        np.testing.assert_allclose(a.path, b.path, rtol=1e-12, atol=1e-14)
    assert builtin[-1].loss[-1] < 1e-3  # the curves cover the valley, not just the start


def test_rosenbrock_formula_value_and_grad_match_the_builtin():
    x = np.random.default_rng(0).uniform(-3, 3, (500, 2))
    loss = expression(ROSENBROCK)
    f, g = loss.value_and_grad(x)
    ref_f, ref_g = Rosenbrock().value_and_grad(x)
    np.testing.assert_allclose(f, ref_f, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-13, atol=1e-11)
    assert loss.param_names == ("x", "y") and loss.dim == 2 and loss.name == "expression"
    np.testing.assert_array_equal(loss.default_init(), [0.0, 0.0])
    assert loss.minima() is None and loss.hessian_extremes() is None


def _random_formula(rng, names, depth: int) -> str:
    """A formula over the whole whitelist, `depth` operations deep at most."""
    if depth == 0 or rng.random() < 0.2:
        if rng.random() < 0.75:
            return str(rng.choice(names))
        return str(rng.choice(["2", "0.5", "3", "1.5", "0.25", "pi", "1e-1"]))
    kind = rng.choice(["binary", "binary", "pow", "neg", "call", "call"])
    sub = lambda: _random_formula(rng, names, depth - 1)  # noqa: E731
    if kind == "binary":
        return f"({sub()} {rng.choice(['+', '-', '*', '/'])} {sub()})"
    if kind == "pow":
        exponent = rng.choice(["2", "3", "0.5", "-1", "(-2)", "1.5", str(rng.choice(names))])
        return f"({sub()})**{exponent}"
    if kind == "neg":
        return f"-({sub()})"
    return f"{rng.choice(FUNCTIONS)}({sub()})"


def _random_losses(seed: int, count: int):
    """`count` seeded random formulas over 1-4 variables that are functions somewhere."""
    rng = np.random.default_rng(seed)
    losses = []
    while len(losses) < count:
        names = ["x", "y", "z", "w"][: rng.integers(1, 5)]
        text = _random_formula(rng, names, depth=int(rng.integers(1, 5)))
        try:
            losses.append(Expression(text, names))
        except ConfigError as error:  # no variable, or sympy finds it nowhere defined
            assert "has no variable" in str(error) or "undefined or complex" in str(error), error
    return losses


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log, sqrt, ... outside their domains
def test_gradients_of_random_formulas_match_central_differences():
    rng = np.random.default_rng(1)
    checked_formulas = checked_points = 0
    for loss in _random_losses(seed=0, count=200):
        points = 0
        for x in rng.uniform(-2, 2, (6, loss.dim)):
            f, g = loss.value_and_grad(x[None])
            h = 1e-6 * np.maximum(1.0, np.abs(x))
            steps = np.diag(h)
            fd = [(loss.value(np.vstack([x + k * steps, x - k * steps])).reshape(2, -1)) for k in (1, 2)]
            fd1, fd2 = ((p - m) / (2 * k * h) for (p, m), k in zip(fd, (1, 2)))
            tol = 1e-6 * np.abs(fd1) + 1e-9 * (1 + np.abs(f[0]))
            smooth = (np.isfinite(f).all() and np.isfinite(g).all() and np.isfinite(fd1).all()
                      and np.isfinite(fd2).all() and np.abs(f[0]) < 1e8
                      and (np.abs(fd1 - fd2) < tol).all())  # no kink or pole within 2h
            if not smooth:
                continue
            assert np.all(np.abs(g[0] - fd1) <= tol), (loss.expr, x, g[0], fd1)
            points += 1
        checked_formulas += points > 0
        checked_points += points
    assert checked_formulas >= 180 and checked_points >= 800, (checked_formulas, checked_points)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("text, has_nan", [
    (ROSENBROCK, False), (EVERYTHING, True), ("x**y + abs(x - y)**0.5 / (x*y)", True)])
def test_rows_are_bit_identical_alone_and_in_any_batch(text, has_nan):
    loss = expression(text, ["x", "y"])
    x = np.random.default_rng(2).uniform(-3, 3, (301, 2))
    x[::7] *= 1e-300  # subnormal territory too
    f, g = loss.value_and_grad(x)
    assert np.isnan(f).any() == has_nan and np.isfinite(f).sum() > 50
    np.testing.assert_array_equal(loss.value(x), f)
    for size in (1, 2, 7, 33):
        for start in range(0, len(x), size * 5):
            part_f, part_g = loss.value_and_grad(x[start:start + size])
            np.testing.assert_array_equal(part_f, f[start:start + size])
            np.testing.assert_array_equal(part_g, g[start:start + size])
            np.testing.assert_array_equal(loss.grad(x[start:start + size]), g[start:start + size])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_random_formulas_are_bit_identical_alone_and_in_a_batch():
    rng = np.random.default_rng(3)
    for loss in _random_losses(seed=4, count=40):
        x = rng.uniform(-2, 2, (65, loss.dim))
        f, g = loss.value_and_grad(x)
        for i in (0, 31, 64):
            alone_f, alone_g = loss.value_and_grad(x[i:i + 1])
            np.testing.assert_array_equal(alone_f, f[i:i + 1], err_msg=loss.expr)
            np.testing.assert_array_equal(alone_g, g[i:i + 1], err_msg=loss.expr)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_abs_has_a_sign_gradient_and_sqrt_log_outside_their_domain_give_nan():
    f, g = expression("abs(x - 1) + 3*abs(y)").value_and_grad(np.array([[3.0, -2.0], [0.0, 0.5], [1.0, 0.0]]))
    np.testing.assert_array_equal(f, [8.0, 2.5, 0.0])
    np.testing.assert_array_equal(g, [[1.0, -3.0], [-1.0, 3.0], [0.0, 0.0]])
    f, g = expression("sqrt(x) + log(y)").value_and_grad(np.array([[-1.0, 1.0], [4.0, -1.0], [4.0, 1.0]]))
    # The value is nan where either is undefined; sqrt's derivative is nan there too,
    # log's is 1/y, defined for y < 0 (the descent stops on the value).
    assert np.isnan(f[:2]).all() and np.isnan(g[0, 0]) and g[1, 1] == -1.0
    np.testing.assert_array_equal(f[2], 2.0)
    np.testing.assert_array_equal(g[2], [0.25, 1.0])


def test_a_step_out_of_the_domain_is_divergence():
    # sqrt(x) from 1 with lr 1: x = 1 -> 0.5 -> -0.207, where sqrt is nan.
    result, = descend(expression("sqrt(x)"), make_optimizer("gd", lr=1.0), np.array([[1.0]]), _rules(1, 100))
    assert (result.status, result.stop_reason, result.iterations) == ("diverged", "nan", 2)


def test_variables_follow_first_appearance_or_the_list_and_unused_ones_are_flat():
    assert expression("b*exp(a) + c - a").variables == ("b", "a", "c")
    loss = expression("x**2", ["y", "x"])
    f, g = loss.value_and_grad(np.array([[5.0, 3.0]]))
    np.testing.assert_array_equal(f, [9.0])
    np.testing.assert_array_equal(g, [[0.0, 6.0]])
    # Names that are also module or sympy names are plain variables here (but E and I: see
    # tests/core/test_expression_constants.py).
    f, g = expression("numpy*S + N - x0 + pi*0", ["numpy", "S", "N", "x0"]).value_and_grad(
        np.array([[2.0, 3.0, 5.0, 7.0]]))
    np.testing.assert_array_equal(f, [4.0])
    np.testing.assert_array_equal(g, [[3.0, 2.0, 1.0, -1.0]])


def test_equal_configs_compare_and_hash_equal():
    from omegaconf import OmegaConf

    listed = OmegaConf.create({"variables": ["x", "y"]}).variables
    a, b, c = expression("x*y + x"), expression("x*y + x", listed), expression("x*y + x", ["y", "x"])
    assert a == b and hash(a) == hash(b) and b.variables == ("x", "y")
    assert a != c and a != expression("x*y+x")


def test_pickles_as_text_and_rebuilds_in_a_fresh_process():
    loss = expression(EVERYTHING)
    blob = pickle.dumps(loss)
    assert len(blob) < 1000  # the two strings, not compiled functions
    assert pickle.loads(blob) == loss
    x = np.array([[0.5, 1.5], [2.0, 0.25]])
    script = textwrap.dedent("""
        import pickle, sys
        import numpy as np
        import gdexp.core.losses.expression
        assert "sympy" not in sys.modules, "sympy must be imported lazily"
        loss = pickle.loads(sys.stdin.buffer.read())
        f, g = loss.value_and_grad(np.array([[0.5, 1.5], [2.0, 0.25]]))
        print(f.tobytes().hex(), g.tobytes().hex())
    """)
    out = subprocess.run([sys.executable, "-c", script], input=blob, capture_output=True, check=True).stdout
    f, g = loss.value_and_grad(x)
    assert out.decode().split() == [f.tobytes().hex(), g.tobytes().hex()]


@pytest.mark.parametrize("text, hessian", [
    ("3*x**2 + 2*x*y + 5*y**2 - x + 7", [[6.0, 2.0], [2.0, 10.0]]),
    ("(x + 2*y - 7)**2 + (2*x + y - 5)**2", [[10.0, 8.0], [8.0, 10.0]]),  # Booth
    ("0.5*(x - 1)**2 + 0.05*(y + 2)**2 + 0.3*x*z + z**2/2", [[1.0, 0.0, 0.3], [0.0, 0.1, 0.0], [0.3, 0.0, 1.0]]),
])
def test_quadratic_formulas_know_their_hessian_extremes(text, hessian):
    lo, hi = np.linalg.eigvalsh(hessian)[[0, -1]]
    assert expression(text).hessian_extremes() == pytest.approx((lo, hi), rel=1e-12)


def test_a_random_quadratic_knows_its_hessian_extremes():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((4, 4))
    hessian = a @ a.T + 0.1 * np.eye(4)
    names = ["p", "q", "r", "s"]
    text = " + ".join(f"{float(hessian[i, j]) / 2!r}*{names[i]}*{names[j]}" for i in range(4) for j in range(4))
    lo, hi = np.linalg.eigvalsh(hessian)[[0, -1]]
    assert expression(text + " - 3*p + 1").hessian_extremes() == pytest.approx((lo, hi), rel=1e-12)


@pytest.mark.parametrize("text", [
    "x**2 - y**2",  # indefinite
    "x**2 + 0*y",  # singular
    ROSENBROCK, "sqrt(x**2)**2 + y**2", "x**2/y", "exp(x) + y**2", "x**2.5 + y**2",
])
def test_non_quadratic_or_not_positive_definite_has_no_hessian_extremes(text):
    assert expression(text, ["x", "y"]).hessian_extremes() is None


def test_booth_formula_agrees_with_the_builtin_booth():
    loss = expression("(x + 2*y - 7)**2 + (2*x + y - 5)**2")
    assert loss.hessian_extremes() == pytest.approx(Booth().hessian_extremes(), rel=1e-12)
    x = np.random.default_rng(6).uniform(-5, 5, (100, 2))
    f, g = loss.value_and_grad(x)
    ref_f, ref_g = Booth().value_and_grad(x)
    np.testing.assert_allclose(f, ref_f, rtol=1e-14)
    np.testing.assert_allclose(g, ref_g, rtol=1e-14, atol=1e-13)


HOSTILE = [
    # (formula, variables, the words the one-line message must hold)
    ("__import__('os')", None, "call of '__import__'"),
    ("__import__('os').system('true')", None, "call of \"__import__('os').system\""),
    ("x.real", None, "attribute access 'x.real'"),
    ("x + y", ["x"], "unknown name 'y'"),
    ("(lambda: x)()", None, "call of 'lambda: x'"),
    ("lambda: x", None, "lambda 'lambda: x'"),
    ("[x for x in (1, 2)]", None, "list comprehension"),
    ("sum(x for x in y)", None, "call of 'sum'"),
    ("{x: 1 for x in y}", None, "dict comprehension"),
    ("x[0]", None, "subscript 'x[0]'"),
    ("sin(x=1)", None, "sin() takes exactly one positional argument"),
    ("sin(x, y)", None, "sin() takes exactly one positional argument"),
    ("sin(*x)", None, "starred argument '*x'"),
    ("x < 1", None, "comparison 'x < 1'"),
    ("x if x else 1", None, "conditional expression"),
    ("x and y", None, "and/or 'x and y'"),
    ("(x := 1)", None, "assignment expression"),
    ("x // 2", None, "operator // in 'x // 2'"),
    ("x % 2", None, "operator %"),
    ("~x", None, "operator ~"),
    ("not x", None, "operator not"),
    ("x @ y", None, "operator @"),
    ("[x, y]", None, "list '[x, y]'"),
    ("(x, y)", None, "tuple"),
    ("f'{x}'", None, "f-string"),
    ("'a' + x", None, "string \"'a'\""),
    ("True*x", None, "boolean 'True'"),
    ("1j*x", None, "complex number '1j'"),
    ("9**9**9", None, "'9**9**9' at column 1 overflows float64"),
    ("x**9**9**9", None, "'9**9**9' at column 4 overflows float64"),
    ("x + 10**400", None, "'10**400' at column 5 overflows float64"),
    ("1e400*x", None, "'1e400' at column 1 overflows float64"),
    ("x + exp(1000)", None, "'exp(1000)' at column 5 overflows float64"),
    ("x + 1/0", None, "'1/0' at column 5 divides by zero"),
    ("x + 0**-1", None, "divides by zero"),
    ("x + log(-1)", None, "'log(-1)' at column 5 is outside its function's domain"),
    ("x + (-8)**(1/3)", None, "is not a real number"),
    ("x + 1e308*10", None, "overflows float64"),
    ("x/(x - x)", None, "sympy simplifies it to zoo*x"),
    ("(-2)**x", None, "its derivative in x"),
    ("x +", None, "syntax error at column"),
    ("x y", None, "syntax error at column 3: invalid syntax"),
    ("(x +\n* y)", None, "syntax error at line 2 column 1"),
    ("import os", None, "syntax error"),
    ("x\x00", None, "null"),
    ("", None, "is empty"),
    ("   ", None, "is empty"),
    (3, None, "must be a formula (a string)"),
    ("2 + 3*pi", None, "has no variable"),
    ("sin + x", None, "function 'sin' at column 1 must be called"),
    ("x(2)", None, "call of 'x'"),
    ("loss**2", None, "name 'loss' at column 1 is taken by a curve column"),
    ("step + x", None, "is taken by a curve column"),
    ("x" + "+x" * (MAX_CHARS // 2), None, f"is {2 * (MAX_CHARS // 2) + 1} characters long; at most {MAX_CHARS}"),
    ("sin(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), None, f"nests more than {MAX_DEPTH} levels deep"),
    ("x**" * 50 + "x", None, f"nests more than {MAX_DEPTH} levels deep"),
]

HOSTILE_VARIABLES = [
    ("x,y", "must be a list of names"),
    (3, "must be a list of names"),
    ([], "needs at least one name"),
    (["x", "x"], "'x' is listed twice"),
    (["x", "1x"], "'1x' is not a name"),
    (["x", "a b"], "'a b' is not a name"),
    (["x", 1], "1 is not a name"),
    (["x", "lambda"], "'lambda' is not a name"),
    (["x", "sin"], "'sin' is a function"),
    (["x", "pi"], "'pi' is a constant"),
    (["x", "lr"], "'lr' is taken by a curve column"),
    (["x", "grad_norm"], "'grad_norm' is taken by a curve column"),
]


def _one_line_error(text, variables) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        expression(text, variables)
    error = caught.value
    assert "\n" not in str(error)
    # Raised from nothing: the command line prints this line and no chained traceback.
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error


@pytest.mark.parametrize("text, variables, words", HOSTILE)
def test_hostile_formulas_fail_with_one_line_naming_the_offender(text, variables, words):
    error = _one_line_error(text, variables)
    assert error.key == "loss.expr" and error.value == text
    assert words in error.reason, error.reason


@pytest.mark.parametrize("variables, words", HOSTILE_VARIABLES)
def test_bad_variable_lists_fail_with_one_line(variables, words):
    error = _one_line_error("x", variables)
    assert error.key == "loss.variables"
    assert words in error.reason, error.reason


def test_whitelist_message_lists_what_is_allowed():
    reason = _one_line_error("x.real", None).reason
    assert reason.endswith("a formula may use numbers, pi, e, its variables, + - * / ** and " + " ".join(FUNCTIONS))
