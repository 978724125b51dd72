"""The Hydra task: one config in, one MLflow run out (a single run, or one job of a sweep)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gdexp.hydra.jobs import keep_folder, single_store, sweep_job_store, write_job_log
from gdexp.hydra.launchers.orphans import stop_with_sweep
from gdexp.hydra.launchers.progress import progress
from gdexp.hydra.schema import job_spec
from gdexp.specs.batch import execute
from gdexp.tracking import env


def to_config(cfg: DictConfig) -> dict:
    """A job's resolved config as plain containers (Hydra's own nodes left out)."""
    # Section by section, leaving Hydra's own node out (its values need a running job).
    return {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
            for key in cfg if key not in ("hydra", "sweep")}  # `sweep`: the named-sweep selector


def task(cfg: DictConfig) -> dict:
    """Hydra's task function: validate, descend and record one config; returns the run's row.

    A config error is raised before any run exists. An error after the run
    is created marks it FAILED (Ctrl-C: KILLED) with what it had logged; in
    a multirun the error is reported and the sweep goes on, so the other jobs
    still run and the sweep's end counts the failures. A single run's line is
    the caller's to say (gdexp.commands.main); a row with status
    ``unrecorded`` is a run the store did not take, kept on disk.
    """
    from hydra.core.hydra_config import HydraConfig

    in_sweep = _in_multirun()
    if in_sweep:
        stop_with_sweep()  # a worker the sweep's process started ends with it (joblib's after a kill -9)
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    swept = env.swept() if in_sweep else {}
    choices = dict(hydra.runtime.choices) if hydra is not None else None
    spec = job_spec(to_config(cfg), tuple(swept.get("name_keys", ())), tuple(swept.get("varied", ())), choices)
    # Imported once the config is valid: a run's record imports pandas (~0.2 s), which a refusal never needs.
    from gdexp.tracking.record import write_run

    store = sweep_job_store(spec, hydra.sweeper.get("_target_")) if in_sweep else single_store(spec)
    # A single run shows its descent's progress (a job of a sweep: its launcher's bar, if any).
    with progress([spec.config["stopping"]["maxiter"]] if not in_sweep else []) as bar:
        row = write_run(store, spec, lambda: execute([spec], watch=None if in_sweep else bar.watch)[0],
                        parent_id=env.get(env.PARENT_RUN) if in_sweep else None, keep_dir=keep_folder(),
                        swallow=in_sweep)
    if hydra is not None:
        write_job_log(Path(str(hydra.runtime.output_dir)), hydra.job.name, row)
    return row


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN

