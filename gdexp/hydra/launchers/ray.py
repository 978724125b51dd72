"""hydra/launcher=ray: a sweep on Ray, each group of jobs that descend together as one task.

Built on hydra-ray-launcher (pip install 'gdexp[ray]'). Its own launcher makes
one Ray task per job; here each run of jobs that descend together is one task
(groups.py; benchmarks/bench_scaleout.py measures the two). `batched: false`
gives hydra-ray-launcher's one task per job.

Either way, before any job leaves this process, the sweep folder is made
absolute, and the sweep's environment (tracking URI, parent run, sweep folder,
MLflow's HTTP settings) goes into each task's runtime_env.env_vars: workers of
a running cluster do not inherit it. This happens at launch, inside the sweep:
Hydra resolves a launcher's config (an ${oc.env:} in it) when it instantiates
the launcher, before the sweep has exported them.
"""
from __future__ import annotations

import logging
from typing import Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as _RayLauncher
from omegaconf import OmegaConf, open_dict

from gdexp.hydra.internals import start_ray
from gdexp.hydra.launchers.groups import absolute_sweep_dir, descent_groups, run_group
from gdexp.tracking import env

log = logging.getLogger(__name__)


class RayLauncher(_RayLauncher):
    def __init__(self, ray, batched: bool = True, jobs_per_task: int | None = None) -> None:
        super().__init__(ray)
        self.batched, self.jobs_per_task = batched, jobs_per_task

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        sweep_dir = absolute_sweep_dir(self.config)
        with open_dict(self.ray_cfg):
            remote = self.ray_cfg.setdefault("remote", {}) or {}
            runtime_env = remote.get("runtime_env") or {}
            variables = {**runtime_env.get("env_vars", {}), **env.exported()}
            self.ray_cfg.remote = {**remote, "runtime_env": {**runtime_env, "env_vars": variables}}
        if not self.batched:
            return super().launch(job_overrides, initial_job_idx)
        import ray

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        start_ray(self.ray_cfg.init)
        task = ray.remote(**OmegaConf.to_container(self.ray_cfg.remote, resolve=True))(run_group)
        groups = descent_groups(self, self.hydra_context.config_loader, self.config, job_overrides,
                                initial_job_idx, self.jobs_per_task)
        log.info(f"Ray: {len(job_overrides)} jobs as {len(groups)} task(s), sweep folder {sweep_dir}")
        state = Singleton.get_state()
        refs = [task.remote(self.hydra_context, self.config, self.task_function, state, first, overrides)
                for first, overrides in groups]
        return [ret for ref in refs for ret in ray.get(ref)]  # groups are consecutive, in order
