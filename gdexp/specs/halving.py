"""Which rows of a batch successive halving judges together, read from their configs.

The rule itself is numerics (gdexp.core.pruning.Halving); which runs form a
group and a unit is a question about configs, answered here.
"""
from __future__ import annotations

import numpy as np

from gdexp.core.pruning import Halving
from gdexp.specs.run_spec import canonical


def group_key(config: dict) -> str:
    """The rows a rung judges together: a run's config less its learning rate, its seed (and a
    loss's ``*seed`` key that took it), and where it is recorded (tracking, hydra).

    >>> a = {"optimizer": {"lr": 0.1}, "seed": 0, "loss": {"init_seed": 0}, "tracking": {"uri": "x"}}
    >>> b = {"optimizer": {"lr": 0.5}, "seed": 1, "loss": {"init_seed": 1}, "tracking": {"uri": "y"}}
    >>> group_key(a) == group_key(b)
    True
    """
    seed = config.get("seed")
    rest = {k: v for k, v in config.items() if k not in ("seed", "tracking", "hydra")}
    rest["optimizer"] = {k: v for k, v in (config.get("optimizer") or {}).items() if k != "lr"}
    loss = config.get("loss")
    if isinstance(loss, dict):
        rest["loss"] = {k: v for k, v in loss.items() if not (k.endswith("seed") and v == seed and k != "seed")}
    return canonical(rest)


def unit_key(config: dict) -> str:
    """The rows kept or pruned together: one learning rate of a group (its seeds)."""
    return group_key(config) + "|" + canonical((config.get("optimizer") or {}).get("lr"))


def of(configs: list[dict]) -> Halving | None:
    """The Halving of a batch from its rows' configs (checked ``stopping`` sections);
    None where ``stopping.prune`` is ``none``.

    Raises:
        ValueError: the rows disagree on the pruning settings (they are batch-wide).
    """
    settings = {(c["stopping"].get("prune", "none"), c["stopping"].get("prune_eta"),
                 c["stopping"].get("prune_min_steps")) for c in configs}
    if len(settings) != 1:
        raise ValueError(f"one batch, several pruning settings: {sorted(settings, key=str)}")
    (prune, eta, min_steps), = settings
    if prune == "none":
        return None
    groups, units = {}, {}
    group = np.array([groups.setdefault(group_key(c), len(groups)) for c in configs], dtype=np.int64)
    unit = np.array([units.setdefault(unit_key(c), len(units)) for c in configs], dtype=np.int64)
    lr = np.array([float((c.get("optimizer") or {}).get("lr", np.nan)) for c in configs])
    return Halving(float(eta), int(min_steps), group, unit, lr)
