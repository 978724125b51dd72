"""Configs logged by gdexp 0.1 (config.yaml artifacts), read by today's code.

0.1 named losses and optimizers by `name` (no `_target_`) and had a `budget`
section with `max_iters` and `tol`; `gdexp rerun` and `gdexp report` on an old
store upgrade such a config before planning it.
"""
from __future__ import annotations

from gdexp.core.losses import LOSSES
from gdexp.core.optimizers import OPTIMIZERS

_BUDGET = {"max_iters": "maxiter", "tol": "gtol", "patience": "patience", "min_delta": "min_delta",
           "divergence_factor": "divergence_factor"}


def upgrade(config: dict) -> dict:
    """A 0.1 config in today's form (unchanged if it already is).

    >>> upgrade({"loss": {"name": "booth"}, "optimizer": {"name": "gd", "lr": 0.1},
    ...          "budget": {"max_iters": 5, "tol": 0.0}})["stopping"]
    {'maxiter': 5, 'gtol': 0.0}
    """
    out = dict(config)
    for section, registry, module in (("loss", LOSSES, "gdexp.core.losses"),
                                      ("optimizer", OPTIMIZERS, "gdexp.core.optimizers")):
        node = out.get(section)
        if isinstance(node, dict) and "_target_" not in node and node.get("name") in registry:
            target = registry[node["name"]]
            out[section] = {"_target_": f"{module}.{target.__name__}", **node}
    if "budget" in out and "stopping" not in out:
        out["stopping"] = {_BUDGET[k]: v for k, v in out.pop("budget").items() if k in _BUDGET}
    return out
