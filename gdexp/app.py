"""The Hydra task: one config in, one MLflow run out."""
from __future__ import annotations

import os
import sys
import traceback
from functools import lru_cache

from omegaconf import DictConfig, OmegaConf

from gdexp import tracking
from gdexp.descent import Trajectory
from gdexp.plan import RunSpec, execute, plan

FAILED = "failed"  # a job's outcome when its code raised (not a descent status)


def to_config(cfg: DictConfig) -> dict:
    """A job's resolved config as plain containers (Hydra's own nodes left out)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    config.pop("sweep", None)  # the named-sweep selector is not part of a run
    return config


def run_one(cfg: DictConfig) -> dict:
    """Validate, descend and record one config; returns the run's summary.

    A config error is raised before any run exists. An error after the run
    is created marks it FAILED (Ctrl-C: KILLED) with what it had logged; in
    a multirun the error is reported and the sweep goes on, so the other jobs
    still run and the sweep's end counts the failures.
    """
    spec = plan(to_config(cfg))
    return store_for(spec).run(spec, lambda: execute([spec])[0], swallow=_in_multirun())


class Store:
    """An MLflow store and experiment that runs are written to."""

    def __init__(self, uri: str, experiment: str):
        self.client = tracking.client(uri)
        self.experiment_id = tracking.experiment_id(self.client, experiment)

    def run(self, spec: RunSpec, descent, swallow: bool, done: bool = False) -> dict:
        """Create the run, get its Trajectory from `descent()`, record it, close it.

        done: the descent already happened (a batched sweep), so params go to
        MLflow with the curves in one request; otherwise they are logged
        first, and kept if the descent fails. With swallow, an error is
        printed and returned as a failed summary instead of raised (the run is
        FAILED in MLflow either way).
        """
        info = tracking.start_run(self.client, self.experiment_id, spec,
                                  parent_id=os.environ.get(tracking.PARENT_ENV), log_params=not done)
        try:
            with tracking.terminating(self.client, info.run_id):
                traj = descent()
                tracking.record(self.client, info, spec, traj,
                                spec.config["tracking"]["curve_points"], log_params=done)
        except Exception as exc:
            if not swallow:
                raise
            print(f"gdexp: run {spec.run_name} ({info.run_id}) FAILED:", file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)
            return {"run_id": info.run_id, "run_name": spec.run_name, "status": FAILED, "error": str(exc)}
        return summary(spec, info.run_id, traj)


def store_for(spec: RunSpec) -> Store:
    """The store a spec's runs go to (one client per store and process)."""
    tracking_cfg = spec.config["tracking"]
    return open_store(tracking.resolve_uri(tracking_cfg["uri"]), tracking_cfg["experiment"])


@lru_cache(maxsize=8)
def open_store(uri: str, experiment: str) -> Store:
    # Cached per process: a sweep's jobs share one client and experiment look-up.
    return Store(uri, experiment)


def summary(spec: RunSpec, run_id: str, traj: Trajectory) -> dict:
    """What a job returns to Hydra (and the sweeper): the run in a few numbers."""
    return {
        "run_id": run_id,
        "run_name": spec.run_name,
        "lr": spec.lr,
        "status": traj.status,
        "final_loss": traj.final_loss,
        "best_loss": traj.best_loss,
        "iterations": traj.iterations,
        "diverged_step": traj.diverged_step,
    }


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
