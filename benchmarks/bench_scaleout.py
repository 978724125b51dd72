"""Issue 5's figures: what each store costs per metric point, and the reference sweep on Ray + server.

    python benchmarks/bench_scaleout.py               # 100 of the reference sweep's 1,000 lrs (~3 min)
    python benchmarks/bench_scaleout.py --runs 1000   # the whole reference sweep

Starts, on 127.0.0.1 in throwaway folders, what a team would run (the helpers
of tests/e2e/test_scaleout.py): PostgreSQL, `mlflow server` on it (--workers 1, job
execution off) and a Ray head (`ray start`, 2 CPUs); stops them at the end.
Needs gdexp[ray,slurm,postgres] and PostgreSQL. Printed:
  1. log_batch cost per metric point (1,000 points a call, as gdexp logs a curve):
     local SQLite, PostgreSQL direct (SQLAlchemy URI), through the MLflow server on it;
  2. the reference sweep slice (`--runs` lrs log-spaced 1e-5..1e-2, plain GD on
     Rosenbrock, 10,000 steps, 1,000 curve points a run) end to end as typed:
     local (gdexp's batched launcher, SQLite) against Ray + server
     (hydra/launcher=ray on the Ray head, tracking=server), and the batched
     launcher with the server, which separates the store's cost from Ray's;
  3. on Ray + server, hydra-ray-launcher's one task per job (hydra.launcher.batched=false)
     against gdexp's one task per batch, and that batch split in as many tasks as
     the head has CPUs (hydra.launcher.jobs_per_task);
  4. the same for submitit_local (one process per job, or per batch), on a small slice.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
from common import median  # noqa: E402

BIN = Path(sys.executable).parent


def per_point(uri: str, runs: int = 20, points: int = 1000, calls: int = 2) -> float:
    """Seconds per metric point of log_batch on `uri` (median over runs, `calls` batches each)."""
    from mlflow.entities import Metric

    from gdexp.tracking import store as tracking  # client, experiment_id

    cl = tracking.client(uri)
    exp = tracking.experiment_id(cl, f"bench-{time.time_ns()}")
    times = []
    for _ in range(runs):
        rid = cl.create_run(exp).info.run_id
        batches = [[Metric(f"m{c}", float(s), 0, s) for s in range(points)] for c in range(calls)]
        t0 = time.perf_counter()
        for batch in batches:
            cl.log_batch(rid, metrics=batch)
        times.append((time.perf_counter() - t0) / (points * calls))
        cl.set_terminated(rid)
    return median(times)


def sweep(args: list[str], cwd: Path, env: dict | None = None) -> float:
    full = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full.update(RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **(env or {}))
    t0 = time.perf_counter()
    done = subprocess.run([str(BIN / "gdexp"), *args], cwd=cwd, env=full, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode:
        sys.exit(done.stdout[-3000:] + done.stderr[-3000:])
    return elapsed


def reference(runs: int, steps: int = 10_000) -> list[str]:
    return ["-m", "loss=rosenbrock", "init=[-1.5,2.0]", "optimizer=gd",
            f"optimizer.lr=logspace(1e-5,1e-2,{runs})", f"stopping.maxiter={steps}"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=100, help="learning rates of the reference sweep (1000: all)")
    p.add_argument("--per-job-runs", type=int, default=100, help="jobs of the one-task-per-job comparison")
    p.add_argument("--submitit-runs", type=int, default=20, help="jobs of the submitit_local comparison")
    args = p.parse_args()
    from pg_server import Postgres
    from ray_head import RayHead
    from test_scaleout import MlflowServer

    work = Path(tempfile.mkdtemp(prefix="gdexp-bench-"))
    pg = Postgres()
    server = MlflowServer(pg.uri(pg.create()), work / "server").start()
    ray = RayHead()
    try:
        print("log_batch, 1000 points a call, per point (median of 20 runs):")
        for name, uri in (("local SQLite", f"sqlite:///{work / 'points.db'}"),
                          ("PostgreSQL direct", pg.database()),
                          ("MLflow server on PostgreSQL", server.url)):
            print(f"  {name:30s} {per_point(uri) * 1e6:6.1f} us")

        started = ray.start()
        if started.returncode:
            raise SystemExit(f"ray start failed:\n{started.stdout}\n{started.stderr}")
        head = ray.address
        n = args.runs
        print(f"\nreference sweep slice: {n} runs x 10,000 steps (Rosenbrock, plain GD), end to end:")
        (work / "local").mkdir()
        local = sweep(reference(n), work / "local")
        print(f"  local: batched launcher, SQLite          {local:7.1f} s  ({local / n * 1e3:6.1f} ms/run)")
        (work / "server").mkdir(exist_ok=True)
        batched_server = sweep([*reference(n), "tracking=server", f"tracking.uri={server.url}",
                                f"hydra.sweep.dir={work / 'server-sweep'}"], work / "server")
        print(f"  local: batched launcher, server on PG    {batched_server:7.1f} s  ({batched_server / n * 1e3:6.1f} ms/run)")
        (work / "ray").mkdir()
        on_ray = sweep([*reference(n), "hydra/launcher=ray", f"hydra.launcher.ray.init.address={head}",
                        "tracking=server", f"tracking.uri={server.url}"], work / "ray")
        print(f"  Ray head + server on PG, batched tasks   {on_ray:7.1f} s  ({on_ray / n * 1e3:6.1f} ms/run)")

        k = args.per_job_runs
        print(f"\nRay (2 CPUs) + server, {k} runs: how the jobs become tasks:")
        for how, extra in (("one task per job (plugin)", ["hydra.launcher.batched=false"]),
                           ("one task per batch (gdexp)", []),
                           ("the batch split in 2 tasks", [f"hydra.launcher.jobs_per_task={-(-k // 2)}"])):
            folder = work / f"ray-{len(extra)}-{extra[0].split('.')[-1] if extra else 'batch'}"
            folder.mkdir()
            t = sweep([*reference(k), "hydra/launcher=ray", f"hydra.launcher.ray.init.address={head}",
                       *extra, "tracking=server", f"tracking.uri={server.url}"], folder)
            print(f"  {how:30s} {t:7.1f} s  ({t / k * 1e3:6.1f} ms/run)")

        k = args.submitit_runs
        print(f"\nsubmitit_local (processes on this machine) + server, {k} runs:")
        for how, batched in (("one process per job (plugin)", "false"), ("one process per batch (gdexp)", "true")):
            folder = work / f"submitit-{batched}"
            folder.mkdir()
            t = sweep([*reference(k), "hydra/launcher=submitit_local", f"hydra.launcher.batched={batched}",
                       "tracking=server", f"tracking.uri={server.url}"], folder)
            print(f"  {how:30s} {t:7.1f} s  ({t / k * 1e3:6.1f} ms/run)")
    finally:
        ray.stop()
        server.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
