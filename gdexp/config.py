"""Structured configs: the typed schema behind every key in conf/.

Each dataclass is registered in Hydra's ConfigStore under `schema/<group>/`,
and each YAML file in conf/<group>/ starts from its schema, so a misspelt key
or a string where a number belongs fails when Hydra composes the config.
Semantic checks (lr > 0, files that exist, ...) live in gdexp.plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


# --- loss group: one dataclass per file in conf/loss/, keys = factory kwargs
@dataclass
class QuadraticConf:
    name: str = "quadratic"
    eigenvalues: List[float] = field(default_factory=lambda: [1.0, 10.0, 100.0])
    center: Optional[List[float]] = None
    rotate: bool = False
    seed: int = 0


@dataclass
class RosenbrockConf:
    name: str = "rosenbrock"
    a: float = 1.0
    b: float = 100.0
    dim: int = 2


@dataclass
class HimmelblauConf:
    name: str = "himmelblau"


@dataclass
class BealeConf:
    name: str = "beale"


@dataclass
class BoothConf:
    name: str = "booth"


@dataclass
class RastriginConf:
    name: str = "rastrigin"
    A: float = 10.0
    dim: int = 2


@dataclass
class LinearRegressionConf:
    name: str = "linear_regression"
    data: Optional[str] = None
    x: Any = "x"  # one column name, or a list of names for a multivariate fit
    y: str = "y"
    slope: float = 2.0
    intercept: float = -1.0
    noise: float = 0.1
    n: int = 100
    seed: int = 0


@dataclass
class LogisticRegressionConf:
    name: str = "logistic_regression"
    data: Optional[str] = None
    x: Any = field(default_factory=lambda: ["x1", "x2"])
    y: str = "y"
    n: int = 200
    separation: float = 2.0
    seed: int = 0


# --- optimizer group: keys = gdexp.core.optimizers factory kwargs
@dataclass
class GdConf:
    name: str = "gd"
    lr: float = 1e-3
    weight_decay: float = 0.0


@dataclass
class MomentumConf:
    name: str = "momentum"
    lr: float = 1e-3
    momentum: float = 0.9
    dampening: float = 0.0
    weight_decay: float = 0.0


@dataclass
class NesterovConf:
    name: str = "nesterov"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass
class AdagradConf:
    name: str = "adagrad"
    lr: float = 1e-2
    lr_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10
    weight_decay: float = 0.0


@dataclass
class RmspropConf:
    name: str = "rmsprop"
    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False
    weight_decay: float = 0.0


@dataclass
class AdamConf:
    name: str = "adam"
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    amsgrad: bool = False
    weight_decay: float = 0.0


@dataclass
class BudgetConf:
    max_iters: int = 1000
    tol: float = 1e-8
    patience: int = 0
    min_delta: float = 0.0
    divergence_factor: float = 1e4


@dataclass
class TrackingConf:
    uri: Optional[str] = None
    experiment: str = "gdexp"
    curve_points: int = 1000


@dataclass
class Config:
    loss: Any = MISSING
    optimizer: Any = MISSING
    budget: BudgetConf = field(default_factory=BudgetConf)
    tracking: TrackingConf = field(default_factory=TrackingConf)
    init: Optional[List[float]] = None
    seed: int = 0


# Hydra plugins of gdexp, selected in conf/config.yaml (gdexp/sweeper.py, gdexp/launcher.py).
@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.gdexp_plugins.GridSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.gdexp_plugins.BatchedLauncher"


# hydra/launcher=ray (gdexp/ray_launcher.py, over hydra-ray-launcher: pip install 'gdexp[ray]').
#   gdexp +sweep=lr_grid hydra/launcher=ray                                  # Ray started in this process
#   gdexp +sweep=lr_grid hydra/launcher=ray hydra.launcher.ray.init.address=HEAD:6379 \
#         tracking=server tracking.uri=http://SERVER:5000                      # a running cluster
@dataclass
class RayLauncherConf:
    _target_: str = "hydra_plugins.gdexp_plugins.RayLauncher"
    batched: bool = True     # false: hydra-ray-launcher's one task per job (slower: benchmarks/bench_scaleout.py)
    jobs_per_task: Optional[int] = None  # split a group of jobs into tasks of at most this many; null = one task
    ray: Dict[str, Any] = field(default_factory=lambda: {
        "init": {
            "address": "local",            # a Ray of this process; `auto` or HOST:PORT joins a running cluster
            "object_store_memory": None,   # the plugin's 75 MiB default is refused by a running cluster
        },
        # Each task also gets the sweep's tracking URI and parent run in runtime_env.env_vars,
        # added at launch (an ${oc.env:} here would resolve before the sweep exports them).
        "remote": {"num_cpus": 1},
    })


# Search sweepers (gdexp/lrfind.py, gdexp/optuna_sweeper.py): each job is chosen from the results so far.
@dataclass
class LrFindSweeperConf:
    _target_: str = "hydra_plugins.gdexp_plugins.LrFindSweeper"
    start: float = 1e-3      # the first lr probed
    factor: float = 10.0     # step while bracketing: one probe a decade
    rtol: float = 0.01       # stop once the bracket's ends are within 1%
    max_probes: int = 30     # bracketing over ~20 decades plus ~10 bisections
    params: Optional[Dict[str, str]] = None  # fixed overrides for every probe


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.gdexp_plugins.OptunaSweeper"
    n_trials: int = 32
    batch_size: int = 8      # trials asked at once, launched as one vectorized batch
    seed: int = 0            # TPE's seed: the same sweep asks the same values
    n_startup_trials: int = 8  # random trials before TPE models the results
    search: Dict[str, Any] = field(default_factory=dict)  # key: {low, high, log, step} or {choices: [...]}
    params: Optional[Dict[str, str]] = None  # fixed overrides, or Hydra's interval()/choice syntax


SCHEMAS = {
    "loss": {
        "quadratic": QuadraticConf,
        "rosenbrock": RosenbrockConf,
        "himmelblau": HimmelblauConf,
        "beale": BealeConf,
        "booth": BoothConf,
        "rastrigin": RastriginConf,
        "linear_regression": LinearRegressionConf,
        "logistic_regression": LogisticRegressionConf,
    },
    "optimizer": {
        "gd": GdConf,
        "momentum": MomentumConf,
        "nesterov": NesterovConf,
        "adagrad": AdagradConf,
        "rmsprop": RmspropConf,
        "adam": AdamConf,
    },
    "budget": {"default": BudgetConf},
    "tracking": {"local": TrackingConf, "server": TrackingConf},
}


def register_configs() -> None:
    """Put every schema into Hydra's ConfigStore; conf/ files build on them."""
    from hydra.core.plugins import Plugins

    # Hydra's plugin scan stores hydra-ray-launcher's and hydra-submitit-launcher's own
    # launcher configs; scanned first, so that gdexp's presets of those names replace them.
    Plugins.instance()
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, options in SCHEMAS.items():
        for option, node in options.items():
            cs.store(group=f"schema/{group}", name=option, node=node)
    cs.store(group="hydra/sweeper", name="gdexp", node=GridSweeperConf)
    cs.store(group="hydra/launcher", name="gdexp", node=BatchedLauncherConf)
    cs.store(group="hydra/launcher", name="ray", node=RayLauncherConf)
    _store_submitit_presets(cs)


def _store_submitit_presets(cs: ConfigStore) -> None:
    """hydra/launcher=submitit_local|submitit_slurm: the plugin's keys (partition, timeout_min,
    ...), plus `batched` and `jobs_per_task` as for ray (gdexp/submitit_launcher.py)."""
    try:
        from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
    except ImportError:  # no `slurm` extra: the names stay unknown to Hydra
        return
    for name, base, cls in (("submitit_local", LocalQueueConf, "SubmititLocalLauncher"),
                            ("submitit_slurm", SlurmQueueConf, "SubmititSlurmLauncher")):
        node = make_dataclass(f"Gdexp{base.__name__}", [
            ("_target_", str, field(default=f"hydra_plugins.gdexp_plugins.{cls}")),
            ("batched", bool, field(default=True)),   # false: the plugin's one task per job
            ("jobs_per_task", Optional[int], field(default=None)),
        ], bases=(base,))
        cs.store(group="hydra/launcher", name=name, node=node)
    cs.store(group="hydra/sweeper", name="lr_find", node=LrFindSweeperConf)
    cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf)
