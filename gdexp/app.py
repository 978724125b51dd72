"""The Hydra task: one config in, one MLflow run out."""
from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gdexp import guards, tracking
from gdexp.core.result import Result
from gdexp.plan import RunSpec, execute, plan

FAILED = "failed"  # a job's outcome when its code raised (not a descent status)
UNRECORDED = "unrecorded"  # descended, but the store did not answer: kept on disk (gdexp.resume)


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
    result = store_for(spec).run(spec, lambda: execute([spec])[0], swallow=_in_multirun())
    if result["status"] == UNRECORDED and not _in_multirun():
        from gdexp.resume import resume_message

        sys.exit(resume_message(1, None, result["uri"], result["error"], Path(result["spool"]).parent.parent))
    return result


class Store:
    """An MLflow store and experiment that runs are written to."""

    def __init__(self, uri: str, experiment: str):
        self.uri, self.experiment = uri, experiment
        self.client = tracking.client(uri)
        self._experiment_id: str | None = None
        self.down: BaseException | None = None  # set once the store did not answer

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = tracking.experiment_id(self.client, self.experiment)
        return self._experiment_id

    def run(self, spec: RunSpec, descent, swallow: bool, done: bool = False) -> dict:
        """Create the run, get its Result from `descent()`, record it, close it.

        done: the descent already happened (a batched sweep), so params go to
        MLflow with the curves in one request; otherwise they are logged
        first, and kept if the descent fails. With swallow, an error is
        printed and returned as a failed summary instead of raised (the run is
        FAILED in MLflow either way).

        A store that does not answer (after the client's bounded retries) is
        not a failure of the run: it is descended anyway and kept on disk
        (gdexp.resume), and this process stops asking that store.
        """
        parent_id = os.environ.get(tracking.PARENT_ENV) or None
        info = traj = None
        now = int(time.time() * 1000)  # the metrics' timestamp, kept if the run is spooled
        try:
            if self.down is not None:
                raise self.down
            info = tracking.start_run(self.client, self.experiment_id, spec,
                                      parent_id=parent_id, log_params=not done)
            with tracking.terminating(self.client, info.run_id):
                traj = descent()
                tracking.record(self.client, info, spec, traj,
                                spec.config["tracking"]["curve_points"], log_params=done, now=now)
        except Exception as exc:
            if tracking.unreachable(exc):
                self.down = exc
                return self._keep(spec, traj, descent, info.run_id if info else None, parent_id, exc, now)
            if not swallow:
                raise
            print(f"gdexp: run {spec.run_name} ({info.run_id}) FAILED:", file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)
            return {"run_id": info.run_id, "run_name": spec.run_name, "status": FAILED, "error": str(exc)}
        return summary(spec, info.run_id, traj)

    def _keep(self, spec: RunSpec, traj, descent, run_id, parent_id, exc, now: int) -> dict:
        """Write the run to the spool folder; returns its summary, status UNRECORDED."""
        from gdexp.resume import short_reason, spool_run

        error = None
        if traj is None:
            try:
                traj = descent()
            except Exception as failure:  # the run failed, and that is what will be recorded
                error = f"{type(failure).__name__}: {failure}"
        store = {"uri": self.uri, "experiment": self.experiment, "parent_id": parent_id}
        entry = spool_run(_spool_folder(), store, run_id, spec, traj, error,
                          spec.config["tracking"]["curve_points"], now)
        reason = short_reason(exc)
        print(f"gdexp: run {spec.run_name} not recorded ({self.uri} does not answer from "
              f"{socket.gethostname()}: {reason}); kept in {entry}", file=sys.stderr)
        out = summary(spec, run_id, traj) if traj is not None else {"run_id": run_id, "run_name": spec.run_name}
        return {**out, "status": UNRECORDED, "spool": str(entry), "uri": self.uri, "error": reason}


def store_for(spec: RunSpec) -> Store:
    """The store a spec's runs go to (one client per store and process).

    In a job of a sweep, first checks that the sweep's environment (parent
    run, tracking URI) reached this process (gdexp.guards).
    """
    tracking_cfg = spec.config["tracking"]
    if _in_multirun():
        from hydra.core.hydra_config import HydraConfig

        guards.check_job_environment(tracking_cfg["uri"], HydraConfig.get().sweeper.get("_target_"))
    return open_store(tracking.resolve_uri(tracking_cfg["uri"]), tracking_cfg["experiment"])


@lru_cache(maxsize=8)
def open_store(uri: str, experiment: str) -> Store:
    # Cached per process: a sweep's jobs share one client and experiment look-up
    # (a new sweep clears it: gdexp.sweeprun). SQLite over NFS is refused here.
    guards.check_store_filesystem(uri)
    return Store(uri, experiment)


def _spool_folder() -> Path:
    """Where unrecorded runs are kept: the sweep's folder, or a single run's output folder."""
    from hydra.core.hydra_config import HydraConfig

    from gdexp.resume import SWEEP_DIR_ENV

    if os.environ.get(SWEEP_DIR_ENV):  # set by the sweep for its jobs (gdexp.sweeprun)
        return Path(os.environ[SWEEP_DIR_ENV])
    if HydraConfig.initialized():
        return Path(str(HydraConfig.get().runtime.output_dir))
    return Path.cwd()


def summary(spec: RunSpec, run_id: str, traj: Result) -> dict:
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
