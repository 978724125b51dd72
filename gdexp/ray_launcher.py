"""hydra/launcher=ray: a sweep on Ray, each group of jobs that descend together as one task.

Built on hydra-ray-launcher (pip install 'gdexp[ray]'). Its own launcher makes
one Ray task per job, and each task composes its config and runs Hydra's
per-job bookkeeping; here the jobs are grouped as gdexp's batched launcher
groups them (same loss and optimizer: rows of one vectorized descent), and
each group runs as one task, in which gdexp's batched launcher descends and
records it (benchmarks/bench_scaleout.py measures the two). `batched: false`
gives hydra-ray-launcher's one task per job.

Either way, before any job leaves this process, the sweep folder is made
absolute (a worker of a cluster started elsewhere would resolve a relative one
against its own folder, where `ray start` ran), and the sweep's environment
(tracking URI, parent run, MLflow's HTTP retry bounds) goes into each task's
runtime_env.env_vars: workers of a running cluster do not inherit it. This
happens at launch, inside the sweep: Hydra resolves a launcher's config
(an ${oc.env:} in it) when it instantiates the launcher, before the sweep
has exported them.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as _RayLauncher
from omegaconf import OmegaConf, open_dict

from gdexp.guards import HTTP_CLIENT_DEFAULTS, PARENT_ENV
from gdexp.resume import SWEEP_DIR_ENV

log = logging.getLogger(__name__)


class RayLauncher(_RayLauncher):
    def __init__(self, ray, batched: bool = True, jobs_per_task: int | None = None) -> None:
        super().__init__(ray)
        self.batched, self.jobs_per_task = batched, jobs_per_task

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        with open_dict(self.config):
            self.config.hydra.sweep.dir = os.path.abspath(str(self.config.hydra.sweep.dir))
        with open_dict(self.ray_cfg):
            remote = self.ray_cfg.setdefault("remote", {}) or {}
            env = {**(remote.get("runtime_env") or {}).get("env_vars", {}), **sweep_environment()}
            self.ray_cfg.remote = {**remote, "runtime_env": {**(remote.get("runtime_env") or {}), "env_vars": env}}
        if not self.batched:
            return super().launch(job_overrides, initial_job_idx)
        import ray
        from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        start_ray(self.ray_cfg.init)
        remote_cfg = OmegaConf.to_container(self.ray_cfg.remote, resolve=True) if self.ray_cfg.remote else {}
        task = ray.remote(**remote_cfg)(_run_group) if remote_cfg else ray.remote(_run_group)
        groups = descent_groups(self.hydra_context.config_loader, self.config, job_overrides,
                                initial_job_idx, self.jobs_per_task)
        log.info(f"Ray: {len(job_overrides)} jobs as {len(groups)} task(s), sweep folder {self.config.hydra.sweep.dir}")
        state = Singleton.get_state()
        refs = [task.remote(self.hydra_context, self.config, self.task_function, state, first, overrides)
                for first, overrides in groups]
        returns: dict[int, JobReturn] = {}
        for (first, _), ref in zip(groups, refs):
            for i, ret in enumerate(ray.get(ref)):
                returns[first + i] = ret
        return [returns[initial_job_idx + i] for i in range(len(job_overrides))]


def sweep_environment() -> dict[str, str]:
    """What a job needs from the launching process's environment, as set now."""
    keys = (PARENT_ENV, "MLFLOW_TRACKING_URI", SWEEP_DIR_ENV, *HTTP_CLIENT_DEFAULTS)
    return {k: os.environ[k] for k in keys if os.environ.get(k)}


def descent_groups(config_loader, config, job_overrides, initial_job_idx: int,
                   jobs_per_task: int | None = None) -> list[tuple[int, list[list[str]]]]:
    """Runs of consecutive jobs that descend as one batch: [(first job number, overrides), ...].

    Consecutive, so that each task keeps Hydra's job numbers (and job folders);
    a grid's product order makes each (loss, optimizer) pair one run of jobs.
    """
    from gdexp.compose import shared_composer
    from gdexp.plan import plan

    composer = shared_composer(config_loader, config)
    groups: list[tuple[int, list[list[str]]]] = []
    last = None
    for i, overrides in enumerate(job_overrides):
        key = plan(composer.task_config(list(overrides))).batch_key
        full = jobs_per_task is not None and len(groups[-1][1]) >= jobs_per_task
        if key != last or full:
            groups.append((initial_job_idx + i, []))
        groups[-1][1].append(list(overrides))
        last = key
    return groups


def _run_group(hydra_context, config, task_function, singleton_state, first: int, overrides) -> list[JobReturn]:
    """In a Ray worker: gdexp's batched launcher over one group of jobs."""
    from hydra.core.hydra_config import HydraConfig

    from gdexp.launcher import BatchedLauncher

    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(config)
    launcher = BatchedLauncher()
    launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)
    return list(launcher.launch(overrides, initial_job_idx=first))
