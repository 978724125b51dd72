"""gdexp's default Hydra launcher: a whole sweep's descent as vectorized batches.

Jobs that share a loss and an optimizer descend together, one row each, in one
process; then each job is recorded exactly as a one-at-a-time job would be:
the same MLflow run, the same Hydra job folder (.hydra/config.yaml, hydra.yaml,
overrides.yaml and the job's log file), the same return value to the sweeper.
Hydra's own `run_job` does that bookkeeping at ~18 ms a job, more than the
whole per-job budget, so it is done here directly; where a configured callback
wants per-job events (on_job_start/on_job_end), Hydra's `run_job` is used.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from hydra.experimental.callback import Callback
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf

from gdexp.specs.batch import chunks
from gdexp.specs.run_spec import RunSpec
from gdexp.hydra.compose import Job, shared_composer
from gdexp.hydra.launchers.jobfiles import JobFiles
from gdexp.hydra.launchers.progress import progress
from gdexp.hydra.jobs import keep_folder, sweep_job_store, write_job_log
from gdexp.tracking import env
from gdexp.tracking.bulk import write_chunk
from gdexp.tracking.live import Timeline, Timing
from gdexp.tracking.record import write_run

log = logging.getLogger(__name__)


class BatchedLauncher(Launcher):
    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
        self.files = JobFiles()  # the job-file templates of this launcher's sweep

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        composer = shared_composer(self, self.hydra_context.config_loader, self.config)
        jobs = [composer.job(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        specs = [composer.spec(job.overrides, job.num) for job in jobs]
        log.info(f"Launching {len(jobs)} jobs: descent in {len({s.batch_key for s in specs})} vectorized batch(es)")
        returns: list[JobReturn | None] = [None] * len(jobs)
        sweeper = self.config.hydra.sweeper.get("_target_")
        with progress([s.config["stopping"]["maxiter"] for s in specs]) as bar:
            # Each run's start and end, and its record while it descends (tracking.live_every).
            # A Hydra callback that wants each job's events gets each job's own run (_run_job): none live.
            timeline = Timeline(specs, lambda spec: sweep_job_store(spec, sweeper), env.get(env.PARENT_RUN),
                                then=bar.watch, off=_wants_job_events(self.hydra_context.callbacks))
            # Chunk by chunk: each is descended, recorded and let go before the next (bounded memory).
            for rows, outcomes in chunks(specs, watch=timeline):
                for i, ret in zip(rows, self._record(composer, [jobs[i] for i in rows], [specs[i] for i in rows],
                                                     outcomes, timeline.take(rows))):
                    returns[i] = ret
                    bar.update(ret.return_value)
        return returns

    def _record(self, composer, jobs: list[Job], specs: list[RunSpec], outcomes: list,
                timings: list[Timing]) -> list[JobReturn]:
        """Record one chunk's runs (one write per store where the store allows it) and their job folders."""
        sweeper = self.config.hydra.sweeper.get("_target_")
        parent_id = env.get(env.PARENT_RUN)
        if _wants_job_events(self.hydra_context.callbacks):
            return [self._run_job(composer, job, spec, outcome, sweeper, parent_id, timing)
                    for job, spec, outcome, timing in zip(jobs, specs, outcomes, timings)]
        rows: list[dict | None] = [None] * len(jobs)
        stores: dict[tuple, list[int]] = {}
        for i, spec in enumerate(specs):
            tracking = spec.config["tracking"]
            stores.setdefault((tracking["uri"], tracking["experiment"]), []).append(i)
        for part in stores.values():
            store = sweep_job_store(specs[part[0]], sweeper)
            written = write_chunk(store, [specs[i] for i in part], [outcomes[i] for i in part],
                                  parent_id=parent_id, keep_dir=keep_folder(), timings=[timings[i] for i in part])
            for i, row in zip(part, written):
                rows[i] = row
        files = self.files
        # A template with interpolations may carry a job's values into other keys: dumped in full.
        sweep_dir = str(self.config.hydra.sweep.dir)  # read once a chunk: an OmegaConf look-up is ~0.3 ms
        return [_lean_job(job, self._job_dir(composer, job, sweep_dir), row, files,
                          None if composer.interpolates(job.overrides) else composer.changed(job.overrides),
                          composer.selection(job.overrides)) for job, row in zip(jobs, rows)]

    def _run_job(self, composer, job: Job, spec: RunSpec, outcome, sweeper, parent_id, timing: Timing) -> JobReturn:
        """Hydra's run_job, for callbacks that want each job's start and end."""
        def task(_cfg=None) -> dict:
            return write_run(sweep_job_store(spec, sweeper), spec, lambda: _unwrap(outcome), parent_id=parent_id,
                             keep_dir=keep_folder(), swallow=True, done=True, times=(timing.start, timing.end))

        return run_job(hydra_context=self.hydra_context, task_function=task,
                       config=composer.full_config(job.num, job.overrides),
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")

    def _job_dir(self, composer, job: Job, sweep_dir: str) -> str:
        subdir = str(job.num)
        if job.hydra["sweep"]["subdir"] != "${hydra.job.num}":  # a custom form: let Hydra resolve it
            subdir = str(composer.full_config(job.num, job.overrides).hydra.sweep.subdir)
        return os.path.join(sweep_dir, subdir)


def _unwrap(outcome):
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _wants_job_events(callbacks) -> bool:
    hooks = ("on_job_start", "on_job_end")
    return any(getattr(type(cb), h) is not getattr(Callback, h)
               for cb in getattr(callbacks, "callbacks", []) for h in hooks)


def _lean_job(job: Job, output_dir: str, row: dict, files: JobFiles, changed, selection) -> JobReturn:
    """Hydra's run_job without its per-job deep copies and logging reconfiguration: the job's
    folder (.hydra files, its log) and its JobReturn, for a run already recorded (`row`)."""
    hydra = job.hydra
    output_dir = os.path.abspath(output_dir)
    hydra["runtime"]["output_dir"] = output_dir
    if hydra.get("output_subdir") is not None:
        files.write(Path(output_dir, hydra["output_subdir"]), job.config, hydra, changed, selection)
    else:
        Path(output_dir).mkdir(parents=True, exist_ok=True)  # (else made with its .hydra folder)
    ret = _LeanReturn(overrides=hydra["overrides"]["task"], working_dir=os.getcwd(), task_name=hydra["job"]["name"])
    ret.config = job.config
    ret.return_value = row
    ret.status = JobStatus.COMPLETED
    # Hydra's default job logging gives each job <output_dir>/<job name>.log; the job's line goes there.
    write_job_log(Path(output_dir), hydra["job"]["name"], row)
    return ret


class _LeanReturn(JobReturn):
    """A JobReturn whose `cfg` (the job's config as a DictConfig, which Hydra's own launchers
    give) is made only when read: building it costs ~5 ms a job, and nothing in a gdexp
    sweep reads it."""

    config: dict | None = None

    @property
    def cfg(self):
        if self._cfg is None and self.config is not None:
            self._cfg = OmegaConf.create(self.config)
        return self._cfg

    @cfg.setter
    def cfg(self, value) -> None:
        self._cfg = value
