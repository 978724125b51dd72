"""When a run stops: its budget, convergence tests and divergence test, per row of a batch;
and whether a batch prunes its runs by successive halving (gdexp.core.pruning)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from gdexp.core.errors import ConfigError
from gdexp.core.params import Factor, NonNegative, NonNegativeInt, PositiveInt, check_section

# stopping.prune: none, or successive halving inside the batch (gdexp.core.pruning).
PRUNERS = ("none", "halving")


@dataclass(frozen=True)
class StoppingConfig:
    """The ``stopping`` config section of one run: the schema of conf/stopping/ (defaults there).

    Names follow scipy.optimize (``maxiter``, ``gtol``), Keras' EarlyStopping
    (``patience``, ``min_delta``), Lightning's lr_find (``early_stop_threshold``) and
    Optuna's SuccessiveHalvingPruner (``prune_eta`` is its reduction factor,
    ``prune_min_steps`` its min_resource); see StoppingRules and gdexp.core.pruning.

    Attributes:
        prune: ``none``, or ``halving``: successive halving among the runs of a group
            (gdexp.core.pruning), batch-wide.
        prune_eta: at each rung the best 1/eta of a group's learning rates go on (> 1).
        prune_min_steps: the first rung's step; rungs at min_steps * eta^k.
    """

    maxiter: PositiveInt = 1000
    gtol: NonNegative = 1e-8
    patience: NonNegativeInt = 0
    min_delta: NonNegative = 0.0
    divergence_factor: Factor = 1e4
    early_stop_threshold: NonNegative = 0.0
    prune: str = "none"
    prune_eta: Factor = 3.0
    prune_min_steps: PositiveInt = 100


def check_stopping(section: dict) -> dict:
    """The stopping section with every key known and in range (ConfigError otherwise).

    >>> check_stopping({"maxiter": 0})
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: stopping.maxiter=0: must be >= 1
    """
    checked = check_section("stopping", StoppingConfig, section, "rules")
    if checked.get("prune", "none") not in PRUNERS:
        raise ConfigError("stopping.prune", checked["prune"], f"must be one of {', '.join(PRUNERS)}")
    threshold = checked.get("early_stop_threshold", 0.0)
    if 0 < threshold <= 1:
        raise ConfigError("stopping.early_stop_threshold", threshold,
                          "must be 0 (off) or > 1 (a multiple of the best loss so far)")
    if checked.get("prune_eta", 3.0) == float("inf"):
        raise ConfigError("stopping.prune_eta", checked["prune_eta"], "must be finite and > 1")
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
        early_stop_threshold: diverged once loss > threshold x the best loss of the
            steps before (0 = off), as Lightning's ``lr_find(early_stop_threshold=4)``
            (unsmoothed: gdexp's full-batch losses carry no noise to smooth).
    """

    maxiter: np.ndarray
    gtol: np.ndarray
    patience: np.ndarray
    min_delta: np.ndarray
    divergence_factor: np.ndarray
    early_stop_threshold: np.ndarray = None

    def __post_init__(self):
        if self.early_stop_threshold is None:  # rules made before the key existed: off
            object.__setattr__(self, "early_stop_threshold", np.zeros(len(self.maxiter)))

    @classmethod
    def of(cls, rows: list[dict]) -> "StoppingRules":
        """Stack one ``stopping`` config dict per row.

        >>> StoppingRules.of([{"maxiter": 10, "gtol": 0.0, "patience": 0, "min_delta": 0.0,
        ...                    "divergence_factor": 1e4}]).maxiter
        array([10])
        """
        ints = {"maxiter", "patience"}
        return cls(**{f.name: np.array([r[f.name] for r in rows], dtype=np.int64 if f.name in ints else float)
                      for f in fields(cls) if f.name in rows[0]})

    def take(self, keep) -> "StoppingRules":
        """The rules of the rows selected by ``keep`` (a mask or indices)."""
        return StoppingRules(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})
