"""When a run stops: its budget, convergence tests and divergence test, per row of a batch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from gdexp.core.params import Factor, NonNegative, NonNegativeInt, PositiveInt, check_section


@dataclass(frozen=True)
class StoppingConfig:
    """The ``stopping`` config section of one run: the schema of conf/stopping/ (defaults there).

    Names follow scipy.optimize (``maxiter``, ``gtol``) and Keras' EarlyStopping
    (``patience``, ``min_delta``); see StoppingRules for their meaning.
    """

    maxiter: PositiveInt = 1000
    gtol: NonNegative = 1e-8
    patience: NonNegativeInt = 0
    min_delta: NonNegative = 0.0
    divergence_factor: Factor = 1e4


def check_stopping(section: dict) -> dict:
    """The stopping section with every key known and in range (ConfigError otherwise).

    >>> check_stopping({"maxiter": 0})
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: stopping.maxiter=0: must be >= 1
    """
    checked = check_section("stopping", StoppingConfig, section, "rules")
    return {**asdict(StoppingConfig()), **checked}


@dataclass(frozen=True)
class StoppingRules:
    """Per-row stopping rules, each an array of shape ``(B,)`` (config group ``stopping``).

    Names follow scipy.optimize (``maxiter``, ``gtol``) and Keras' EarlyStopping
    (``patience``, ``min_delta``).

    Attributes:
        maxiter: gradient steps at most (>= 1).
        gtol: converged once the gradient's Euclidean norm is below it (0 = off).
        patience: converged once the best loss has not improved by more than
            ``min_delta`` for ``patience`` consecutive steps (0 = off), as
            ``keras.callbacks.EarlyStopping(patience, min_delta)``.
        min_delta: the improvement that resets the patience counter (>= 0).
        divergence_factor: diverged once loss > factor x |initial loss|; nan or
            inf in the loss, gradient or parameters always counts (inf = only those).
    """

    maxiter: np.ndarray
    gtol: np.ndarray
    patience: np.ndarray
    min_delta: np.ndarray
    divergence_factor: np.ndarray

    @classmethod
    def of(cls, rows: list[dict]) -> "StoppingRules":
        """Stack one ``stopping`` config dict per row.

        >>> StoppingRules.of([{"maxiter": 10, "gtol": 0.0, "patience": 0, "min_delta": 0.0,
        ...                    "divergence_factor": 1e4}]).maxiter
        array([10])
        """
        ints = {"maxiter", "patience"}
        return cls(**{f.name: np.array([r[f.name] for r in rows], dtype=np.int64 if f.name in ints else float)
                      for f in fields(cls)})

    def take(self, keep) -> "StoppingRules":
        """The rules of the rows selected by ``keep`` (a mask or indices)."""
        return StoppingRules(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})
