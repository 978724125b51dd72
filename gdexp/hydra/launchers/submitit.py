"""hydra/launcher=submitit_slurm and submitit_local: a sweep as SLURM jobs (or local processes),
one per group of jobs that descend together.

Built on hydra-submitit-launcher (pip install 'gdexp[slurm]'). Its own
launchers submit one job (array task) per Hydra job, each paying an
interpreter start, imports and Hydra's per-job bookkeeping; here each run of
jobs that descend together is one array task (groups.py), in which gdexp's
batched launcher descends and records them. `batched: false` gives the
plugin's one task per job. Every key of the plugin's presets keeps its meaning
(partition, timeout_min, cpus_per_task, ...). A SLURM job gets the environment
of the process that submits it, so the sweep's tracking URI and parent run
reach it; the sweep folder is made absolute (it must be on a filesystem the
nodes share).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
from omegaconf import OmegaConf

from gdexp.hydra.launchers.groups import absolute_sweep_dir, descent_groups, run_group

log = logging.getLogger(__name__)


class _Batched:
    """Mixed into the plugin's launchers: launch() and the task (__call__) work on groups."""

    _EXECUTOR: str

    def __init__(self, batched: bool = True, jobs_per_task: int | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.batched, self.jobs_per_task = batched, jobs_per_task

    def __call__(self, *args: Any) -> Any:
        if not self.batched:
            return super().__call__(*args)
        overrides, first, singleton_state = args
        return run_group(self.hydra_context, self.config, self.task_function, singleton_state, first, overrides)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        sweep_dir = Path(absolute_sweep_dir(self.config))
        if not self.batched:
            return super().launch(job_overrides, initial_job_idx)
        groups = descent_groups(self, self.hydra_context.config_loader, self.config, job_overrides,
                                initial_job_idx, self.jobs_per_task)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"submitit {self._EXECUTOR}: {len(job_overrides)} jobs as {len(groups)} task(s), "
                 f"sweep folder {sweep_dir}")
        state = Singleton.get_state()
        tasks = self._executor().map_array(self, [o for _, o in groups], [f for f, _ in groups],
                                           [state] * len(groups))
        return [ret for task in tasks for ret in task.results()[0]]  # groups are consecutive, in order

    def _executor(self):
        """The executor the plugin's launch() builds, from the same parameters."""
        import submitit

        specific = {"max_num_timeout"}
        init = {"folder": self.params["submitit_folder"],
                **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in specific}}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in specific | {"submitit_folder"}})
        return executor


class SubmititLocalLauncher(_Batched, LocalLauncher):
    """hydra/launcher=submitit_local, batched."""


class SubmititSlurmLauncher(_Batched, SlurmLauncher):
    """hydra/launcher=submitit_slurm, batched."""
