"""The built-in losses. Configs name them with `_target_` (conf/loss/*.yaml, gdexp.core.registry);
LOSSES lists them by name for scripts, tests and `make_loss`."""
from __future__ import annotations

from collections.abc import Callable

from gdexp.core.errors import ConfigError
from gdexp.core.params import check_section
from gdexp.core.losses.base import Loss
from gdexp.core.losses.classic import Beale, Booth, Himmelblau, Rastrigin, Rosenbrock
# The factories of mlp.py and expression.py keep their modules' names free: their targets are
# gdexp.core.losses.mlp.mlp and gdexp.core.losses.expression.expression.
from gdexp.core.losses.expression import Expression
from gdexp.core.losses.expression import expression as _expression
from gdexp.core.losses.mlp import MLP
from gdexp.core.losses.mlp import mlp as _mlp
from gdexp.core.losses.quadratic import Quadratic
from gdexp.core.losses.regression import (LinearRegression, LogisticRegression, linear_regression,
                                     logistic_regression)
# torch is imported only when a loss=torch is built.
from gdexp.core.losses.torch_module import torch_module as _torch_module

__all__ = [
    "LOSSES", "Beale", "Booth", "Expression", "Himmelblau", "LinearRegression", "LogisticRegression", "Loss",
    "MLP", "Quadratic", "Rastrigin", "Rosenbrock", "linear_regression", "logistic_regression", "make_loss",
]

# Each factory's keyword arguments are the config keys under `loss.`.
LOSSES: dict[str, Callable[..., Loss]] = {
    "quadratic": Quadratic,
    "rosenbrock": Rosenbrock,
    "himmelblau": Himmelblau,
    "beale": Beale,
    "booth": Booth,
    "rastrigin": Rastrigin,
    "linear_regression": linear_regression,
    "logistic_regression": logistic_regression,
    "mlp": _mlp,
    "expression": _expression,
    "torch": _torch_module,
}


def make_loss(name: str, **params) -> Loss:
    """The built-in loss registered as `name`, built from its config keys (for scripts and tests;
    configs name their loss with ``_target_``, gdexp.core.registry).

    Raises:
        ConfigError: for an unknown name, an unknown key, or a bad value.

    >>> make_loss("rosenbrock", dim=3).default_init()
    array([-1.5,  2. , -1.5])
    """
    factory = LOSSES.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ConfigError("loss.name", name, f"unknown loss; choose one of: {', '.join(LOSSES)}")
    return factory(**check_section("loss", factory, params, name))
