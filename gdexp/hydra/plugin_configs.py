"""Hydra's side of gdexp's plugins: the config nodes of its sweepers and launchers.

Selected in conf/plugins/gdexp.yaml (the defaults) or by a named sweep
(``hydra/sweeper: lr_find``); the implementations live in gdexp/hydra/sweepers/
and gdexp/hydra/launchers/, registered where Hydra looks for plugins by the
thin subclasses in hydra_plugins/gdexp_plugins/.
"""
from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


# hydra/sweeper=gdexp and hydra/launcher=gdexp, the defaults (sweepers/grid.py, launchers/batched.py).
@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.gdexp_plugins.GridSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.gdexp_plugins.BatchedLauncher"


# hydra/launcher=ray (launchers/ray.py, over hydra-ray-launcher: pip install 'gdexp[ray]').
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
        # num_gpus: 1 gives each task a GPU of its own (Ray sets its CUDA_VISIBLE_DEVICES, and
        # loss.device=auto descends there); at 0 a task is placed by its CPUs alone.
        "remote": {"num_cpus": 1, "num_gpus": 0},
    })


# Search sweepers (sweepers/lr_find.py, sweepers/optuna.py): each job is chosen from the results so far.
@dataclass
class LrFindSweeperConf:
    _target_: str = "hydra_plugins.gdexp_plugins.LrFindSweeper"
    start: float = 1e-3      # the first lr probed
    factor: float = 10.0     # step while bracketing: one probe a decade
    rtol: float = 0.01       # stop once the bracket's ends are within 1%
    max_probes: int = 30     # bracketing over ~20 decades plus ~10 bisections
    params: Optional[Dict[str, str]] = None  # fixed overrides for every probe


@dataclass
class LrRangeTestSweeperConf:
    _target_: str = "hydra_plugins.gdexp_plugins.LrRangeTestSweeper"
    start_lr: float = 1e-8   # the ramp's first rate and the grid's smallest (Lightning's min_lr)
    end_lr: float = 1.0      # where the ramp would end and the grid's largest (Lightning's max_lr)
    num_steps: int = 100     # the ramp's length (Lightning's num_training)
    threshold: float = 4.0   # stop the ramp once loss > threshold * best so far (Lightning's early_stop_threshold)
    points: int = 13         # grid points, log-spaced: 1.5 a decade over 1e-8..1
    params: Optional[Dict[str, str]] = None  # overrides for every job; comma lists sweep


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.gdexp_plugins.OptunaSweeper"
    n_trials: int = 32
    batch_size: int = 8      # trials asked at once, launched as one vectorized batch
    seed: int = 0            # TPE's seed: the same sweep asks the same values
    n_startup_trials: int = 8  # random trials before TPE models the results
    search: Dict[str, Any] = field(default_factory=dict)  # key: {low, high, log, step} or {choices: [...]}
    params: Optional[Dict[str, str]] = None  # fixed overrides, or Hydra's interval()/choice syntax


def store_plugins(cs: ConfigStore) -> None:
    """Every gdexp sweeper and launcher into the ConfigStore; the submitit presets only where
    the slurm extra is installed (they build on its configs)."""
    cs.store(group="hydra/sweeper", name="gdexp", node=GridSweeperConf)
    cs.store(group="hydra/sweeper", name="lr_find", node=LrFindSweeperConf)
    cs.store(group="hydra/sweeper", name="lr_range_test", node=LrRangeTestSweeperConf)
    cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf)
    cs.store(group="hydra/launcher", name="gdexp", node=BatchedLauncherConf)
    cs.store(group="hydra/launcher", name="ray", node=RayLauncherConf)
    _store_submitit_presets(cs)


def _store_submitit_presets(cs: ConfigStore) -> None:
    """hydra/launcher=submitit_local|submitit_slurm: the plugin's keys (partition, timeout_min,
    ...), plus `batched` and `jobs_per_task` as for ray (launchers/submitit.py)."""
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
