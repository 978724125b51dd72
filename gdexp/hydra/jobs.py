"""What a job of gdexp needs around its run, shared by the task and the launchers: the store it
records in, the folder that keeps what the store did not take, its line in the job's log."""
from __future__ import annotations

import math
from pathlib import Path

from gdexp.core.outcomes import DIVERGED
from gdexp.specs.run_spec import RunSpec
from gdexp.tracking import env, guards
from gdexp.tracking.stale_sweeps import close_dead_in
from gdexp.tracking.store import Store, forget_stores, open_store, resolve_uri


def job_store(spec: RunSpec) -> Store:
    """The store a run goes to (one client per store and process)."""
    tracking = spec.config["tracking"]
    return open_store(resolve_uri(tracking["uri"]), tracking["experiment"])


def single_store(spec: RunSpec) -> Store:
    """The store of a single run, a tracking server asked first: one that does not answer is an
    input error (one line, nothing run), as for a sweep, not minutes of MLflow's retries. (A job
    of a sweep whose server goes away keeps its run on disk instead: gdexp resume.)"""
    guards.check_reachable(resolve_uri(spec.config["tracking"]["uri"]))
    forget_stores()  # a new command asks the store again (its experiment may be deleted since), as a sweep does
    store = job_store(spec)
    close_dead_in(store)  # sweeps a dead process left RUNNING
    return store


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
    >>> run_line({"run_name": "mlp-adam-lr=0.01", "status": "max_iters", "iterations": 500,
    ...           "final_loss": 0.0821, "val_accuracy": 0.9733, "run_id": "cd34"})
    'mlp-adam-lr=0.01: max_iters after 500 steps, final loss 0.0821, validation accuracy 0.9733 (run cd34)'
    """
    what = row["status"]
    if what == DIVERGED:
        what = f"diverged at step {row.get('diverged_step')} ({row.get('divergence')})"
    elif row.get("iterations") is not None:
        what = f"{what} after {row['iterations']} steps, final loss {row['final_loss']:.6g}"
        accuracy = row.get("val_accuracy")
        if isinstance(accuracy, float) and math.isfinite(accuracy):  # a classifier: what it is judged by
            what += f", validation accuracy {accuracy:.4g}"
    if row.get("error"):
        what += f": {row['error']}"
    return f"{row['run_name']}: {what} (run {row.get('run_id')})"
