"""Shared pieces of the benchmarks: timing, fresh stores, the MLflow floor."""
from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@contextmanager
def timed(out: dict, key: str):
    t0 = time.perf_counter()
    yield
    out.setdefault(key, []).append(time.perf_counter() - t0)


def median(values) -> float:
    return statistics.median(values)


def floor_write(uri: str, specs, trajectories, with_store: bool = True) -> float:
    """The cheapest plain-MLflow way to store the same runs: seconds taken.

    Per run: create_run, one log_batch of the same params, the same curve
    points and summary metrics, the same tags, set_terminated. No Hydra, no
    descent, no artifacts: the floor MLflow itself sets. With with_store the
    store is created inside the timing (gdexp end to end pays for it too).
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from gdexp.tracking import content

    t0 = time.perf_counter()
    cl = MlflowClient(uri)
    exp = cl.create_experiment("floor")
    if not with_store:
        t0 = time.perf_counter()
    for spec, traj in zip(specs, trajectories):
        run = cl.create_run(exp, run_name=spec.run_name)
        # The same points gdexp logs (content.run_metrics), through the plain client.
        metrics = [Metric(*m) for m in content.run_metrics(spec, traj, spec.config["tracking"]["curve_points"], 0)]
        cl.log_batch(run.info.run_id, metrics=metrics,
                     params=[Param(k, v) for k, v in content.params(spec.config).items()],
                     tags=[RunTag(k, v) for k, v in content.status_tags(traj).items()])
        cl.set_terminated(run.info.run_id)
    return time.perf_counter() - t0


def compose_specs(overrides_per_run: list[list[str]]):
    """RunSpecs for these override lists, composed in-process (not timed by callers)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from gdexp.hydra.task import to_config
    from gdexp.hydra.compose import JobComposer
    from gdexp.hydra.schema import register_configs
    from gdexp.hydra.paths import conf_dir
    from gdexp.specs.run_spec import build_spec

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        master = compose("config", return_hydra_config=True)
        composer = JobComposer(GlobalHydra.instance().config_loader(), master)
        return [build_spec(composer.task_config(o)) for o in overrides_per_run]


def parser(doc: str, quick: str, threads: str) -> argparse.ArgumentParser:
    """A benchmark's command line: --quick (what it shrinks to: `quick`), --repeat (3), --threads
    (BLAS threads, default 1: on a shared machine more threads measure the neighbours more than
    the code; `threads` says which libraries)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help=f"{threads} threads (default 1)")
    return p
