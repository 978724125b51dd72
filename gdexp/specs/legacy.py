"""Configs and keys of gdexp 0.1, read by today's code: the one map of what was renamed.

0.1 named losses and optimizers by `name` (no `_target_`) and had a `budget`
section with `max_iters` and `tol`. `gdexp rerun` and `gdexp report` on an old
store upgrade such a config before planning it (`upgrade`); the command line,
gdexp.run/sweep and sweep files rewrite `budget.*` keys with a warning
(`RENAMED`, `warn_renamed`; gdexp.hydra.argv and gdexp.hydra.named_sweeps).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# budget.KEY (0.1) -> stopping.KEY (0.2, scipy's and Keras' names).
BUDGET = {"max_iters": "maxiter", "tol": "gtol", "patience": "patience", "min_delta": "min_delta",
          "divergence_factor": "divergence_factor"}
# Deprecated in 0.2: the old keys keep working until 0.3, each with a one-line warning.
RENAMED = {f"budget.{old}": f"stopping.{new}" for old, new in BUDGET.items()}
_warned: set[str] = set()


def warn_renamed(key: str) -> None:
    """Say once per process that `key` is deprecated, and its new name."""
    if key not in _warned:
        _warned.add(key)
        log.warning(f"gdexp: warning: {key} is deprecated, use {RENAMED[key]} (the old name works until gdexp 0.3)")


def upgrade(config: dict) -> dict:
    """A 0.1 config in today's form (unchanged if it already is).

    >>> upgrade({"loss": {"name": "booth"}, "optimizer": {"name": "gd", "lr": 0.1},
    ...          "budget": {"max_iters": 5, "tol": 0.0}})["stopping"]
    {'maxiter': 5, 'gtol': 0.0}
    """
    from gdexp.core.losses import LOSSES
    from gdexp.core.optimizers import OPTIMIZERS

    out = dict(config)
    for section, registry, module in (("loss", LOSSES, "gdexp.core.losses"),
                                      ("optimizer", OPTIMIZERS, "gdexp.core.optimizers")):
        node = out.get(section)
        if isinstance(node, dict) and "_target_" not in node and node.get("name") in registry:
            target = registry[node["name"]]
            out[section] = {"_target_": f"{module}.{target.__name__}", **node}
    if "budget" in out and "stopping" not in out:
        out["stopping"] = {BUDGET[k]: v for k, v in out.pop("budget").items() if k in BUDGET}
    return out
