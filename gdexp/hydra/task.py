"""The Hydra task: one config in, one MLflow run out (a single run, or one job of a sweep)."""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gdexp.core.batch import execute
from gdexp.core.errors import ConfigError
from gdexp.core.outcomes import DIVERGED, UNRECORDED
from gdexp.core.spec import RunSpec, plan
from gdexp.hydra.launchers.progress import progress
from gdexp.hydra.schema import check_top_level
from gdexp.tracking import env, guards
from gdexp.tracking.config import check_tracking
from gdexp.tracking.pending import resume_message
from gdexp.tracking.record import write_run
from gdexp.tracking.store import Store, open_store, resolve_uri, where_to_look

_last: list[dict] = []       # the row of the last run this process's task recorded (gdexp.run reads it)


def to_config(cfg: DictConfig) -> dict:
    """A job's resolved config as plain containers (Hydra's own nodes left out)."""
    # Section by section, leaving Hydra's own node out (its values need a running job).
    return {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
            for key in cfg if key not in ("hydra", "sweep")}  # `sweep`: the named-sweep selector


def plan_job(config: dict, name_keys: tuple[str, ...] = ()) -> RunSpec:
    """Check every section of a job's config and plan its run (ConfigError naming the key)."""
    check_top_level(config)
    config = {**config, "tracking": check_tracking(config.get("tracking") or {})}
    return plan(config, name_keys)


def task(cfg: DictConfig) -> dict:
    """Hydra's task function: validate, descend and record one config; returns the run's row.

    A config error is raised before any run exists. An error after the run
    is created marks it FAILED (Ctrl-C: KILLED) with what it had logged; in
    a multirun the error is reported and the sweep goes on, so the other jobs
    still run and the sweep's end counts the failures.
    """
    from hydra.core.hydra_config import HydraConfig

    in_sweep = _in_multirun()
    spec = plan_job(to_config(cfg))
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    store = sweep_job_store(spec, hydra.sweeper.get("_target_")) if in_sweep else single_store(spec)
    # A single run shows its descent's progress (a job of a sweep: its launcher's bar, if any).
    with progress([spec.config["stopping"]["maxiter"]] if not in_sweep else []) as bar:
        row = write_run(store, spec, lambda: execute([spec], watch=None if in_sweep else bar.watch)[0],
                        parent_id=env.get(env.PARENT_RUN) if in_sweep else None, keep_dir=keep_folder(),
                        swallow=in_sweep)
    if hydra is not None:
        write_job_log(Path(str(hydra.runtime.output_dir)), hydra.job.name, row)
    _last[:] = [row]
    if not in_sweep:
        report_single(store, row)
    return row


def last_row() -> dict | None:
    """The row of the last run the task recorded in this process, taken: None when no run was
    recorded since the last call (for gdexp.run)."""
    return _last.pop() if _last else None


def job_store(spec: RunSpec) -> Store:
    """The store a run goes to (one client per store and process)."""
    tracking = spec.config["tracking"]
    return open_store(resolve_uri(tracking["uri"]), tracking["experiment"])


def single_store(spec: RunSpec) -> Store:
    """The store of a single run, a tracking server asked first: one that does not answer is an
    input error (one line, nothing run), as for a sweep, not minutes of MLflow's retries. (A job
    of a sweep whose server goes away keeps its run on disk instead: gdexp resume.)"""
    guards.check_reachable(resolve_uri(spec.config["tracking"]["uri"]))
    return job_store(spec)


def sweep_job_store(spec: RunSpec, sweeper_target: str | None) -> Store:
    """The store of a job of a sweep, once the sweep's environment is known to have reached
    this process (gdexp.tracking.guards.check_job_environment)."""
    guards.check_job_environment(spec.config["tracking"]["uri"], sweeper_target)
    guards.check_planned(spec)  # its data as validated
    return job_store(spec)


def write_job_log(output_dir: Path, job_name: str, row: dict) -> None:
    """The job's line in its Hydra log file, <output dir>/<job name>.log."""
    if output_dir.is_dir():
        with open(output_dir / f"{job_name}.log", "a") as job_log:
            job_log.write(f"[gdexp] {run_line(row)}\n")


def keep_folder() -> Path:
    """Where runs the store could not take are kept: the sweep's folder, or the run's output folder."""
    from hydra.core.hydra_config import HydraConfig

    if env.get(env.SWEEP_DIR):
        return Path(env.get(env.SWEEP_DIR))
    if HydraConfig.initialized():
        return Path(str(HydraConfig.get().runtime.output_dir))
    return Path.cwd()


def run_line(row: dict) -> str:
    """One line for a run: name, status, steps, final loss, run id.

    >>> run_line({"run_name": "booth-gd-lr=0.01", "status": "converged", "iterations": 412,
    ...           "final_loss": 1.2e-17, "run_id": "ab12"})
    'booth-gd-lr=0.01: converged after 412 steps, final loss 1.2e-17 (run ab12)'
    """
    what = row["status"]
    if what == DIVERGED:
        what = f"diverged at step {row.get('diverged_step')} ({row.get('divergence')})"
    elif row.get("iterations") is not None:
        what = f"{what} after {row['iterations']} steps, final loss {row['final_loss']:.6g}"
    if row.get("error"):
        what += f": {row['error']}"
    return f"{row['run_name']}: {what} (run {row.get('run_id')})"


def report_single(store: Store, row: dict) -> None:
    """What a single run prints: its line and where to look; exit 1 if it was kept on disk."""
    if row["status"] == UNRECORDED:
        sys.exit(resume_message(1, None, row["uri"], row["error"], Path(row["kept"]).parent.parent))
    print(run_line(row))
    print(where_to_look(store.uri, store.experiment_id, row["run_id"], single=True))


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN

