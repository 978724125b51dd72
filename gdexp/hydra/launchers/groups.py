"""What gdexp's cluster launchers share: a sweep's jobs as batches, run in another process.

hydra/launcher=ray (ray.py) and submitit_local / submitit_slurm (submitit.py)
send each run of consecutive jobs that descend together (same loss and
optimizer: rows of one vectorized batch) as one task,
in which gdexp's batched launcher descends and records them, instead of one
task per job that composes its config and pays Hydra's per-job bookkeeping.
Nothing here imports Ray or submitit.
"""
from __future__ import annotations

import os

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, setup_globals
from omegaconf import open_dict

from gdexp.hydra.compose import shared_composer
from gdexp.hydra.launchers.batched import BatchedLauncher


def absolute_sweep_dir(config) -> str:
    """Make hydra.sweep.dir absolute in `config`, before any job leaves this process.

    A worker elsewhere resolves a relative folder against its own (for Ray, the
    folder `ray start` ran in), and a `${now:}` in it at its own time.
    """
    with open_dict(config):
        config.hydra.sweep.dir = os.path.abspath(str(config.hydra.sweep.dir))
    return config.hydra.sweep.dir


def descent_groups(launcher, config_loader, config, job_overrides, initial_job_idx: int,
                   jobs_per_task: int | None = None) -> list[tuple[int, list[list[str]]]]:
    """Runs of consecutive jobs that descend as one batch: [(first job number, overrides), ...].

    Consecutive, so that each task keeps Hydra's job numbers (and job folders);
    a grid's product order makes each (loss, optimizer) pair one run of jobs.
    With jobs_per_task, a run is split into tasks of at most that many jobs, except
    under successive halving (stopping.prune=halving): a rung judges a group's runs
    together, so a batch's jobs stay in one task, whatever jobs_per_task says.
    """
    composer = shared_composer(launcher, config_loader, config)
    groups: list[tuple[int, list[list[str]]]] = []
    last = None
    for i, overrides in enumerate(job_overrides):
        spec = composer.spec(list(overrides), initial_job_idx + i)
        key = spec.batch_key
        splits = jobs_per_task is not None and spec.config["stopping"].get("prune", "none") == "none"
        full = splits and bool(groups) and len(groups[-1][1]) >= jobs_per_task
        if key != last or full:
            groups.append((initial_job_idx + i, []))
        groups[-1][1].append(list(overrides))
        last = key
    return groups


def run_group(hydra_context, config, task_function, singleton_state, first: int, overrides) -> list[JobReturn]:
    """In the worker: gdexp's batched launcher over one group of jobs, numbered from `first`."""
    from hydra.core.hydra_config import HydraConfig

    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(config)
    launcher = BatchedLauncher()
    launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)
    return list(launcher.launch(overrides, initial_job_idx=first))
