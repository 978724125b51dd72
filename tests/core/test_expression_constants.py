"""A formula's named numbers: pi, e and E are constants; nan, inf, oo, zoo and I are refused in
one line (never extra parameters)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gdexp.core.errors import ConfigError
from gdexp.core.losses.expression import REFUSED, Expression


@pytest.mark.parametrize("name", ["e", "E"])
def test_e_is_eulers_number_not_a_parameter(name):
    loss = Expression(f"{name}*x**2 + y**2")
    assert loss.variables == ("x", "y")
    x = np.array([[1.5, -0.5]])
    f, g = loss.value_and_grad(x)
    assert f[0] == pytest.approx(math.e * 2.25 + 0.25)
    assert g[0] == pytest.approx([2 * math.e * 1.5, -1.0])


@pytest.mark.parametrize("name", REFUSED)
def test_nan_inf_and_sympy_names_are_refused_in_one_line(name):
    with pytest.raises(ConfigError) as caught:
        Expression(f"{name}*x")
    text = str(caught.value)
    assert text.startswith(f"loss.expr='{name}*x': '{name}' at column 1 is not allowed") and "\n" not in text


@pytest.mark.parametrize("name", ["e", "E", "nan", "I"])
def test_a_variable_cannot_take_a_constants_name(name):
    with pytest.raises(ConfigError, match="loss.variables"):
        Expression("x**2", variables=("x", name))


def test_the_command_line_refuses_nan_before_any_run(gdexp, store):
    code, _, err = gdexp("loss=expression", "loss.expr=nan*x**2", "stopping.maxiter=5")
    assert code == 2 and err.strip().splitlines() == [
        "gdexp: error: loss.expr='nan*x**2': 'nan' at column 1 is not allowed: a loss must be finite and real "
        "(nan, inf, oo, zoo, I are refused; e, E and pi are the constants)"]
