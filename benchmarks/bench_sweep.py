"""Issue 3's figures: the reference learning-rate sweep, against MLflow's floor and the slow way.

    python benchmarks/bench_sweep.py                # 1,000 lrs x 10,000 steps (several minutes)
    python benchmarks/bench_sweep.py --runs 100     # a quicker look

Reference workload: `--runs` learning rates log-spaced 1e-5 to 1e-2, plain GD
on Rosenbrock from (-1.5, 2), 10,000 steps, default logging, fresh SQLite store.
Printed, all from this one run:
  1. gdexp end to end, as a user types it (`gdexp -m ...` in a subprocess);
  2. the raw-SQLite floor: the same points, params and tags (as gdexp logs
     them) written with sqlite3 executemany into tables of the same shape,
     with no keys (benchmarks/bench_write.py's floor); issue 14's target is
     gdexp end to end within 5x of it;
  3. MLflow's floor: the same runs written by the cheapest plain-client
     script (create run, one log_batch of the same points, params, tags,
     terminate; no Hydra, no descent), into its own fresh store, plus that
     script's start-up (Python and `import mlflow`, timed in a subprocess);
  4. the tutorial-style app (benchmarks/tutorial_app.py: Hydra's basic
     launcher, log_metric each step) on two small slices, giving its per-job
     and per-step cost, extrapolated to the same runs;
  5. gdexp's vectorized descent against a bare numpy loop over the same batch.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_write import sqlite_floor  # noqa: E402
from common import compose_specs, floor_write, median  # noqa: E402

HERE = Path(__file__).resolve().parent


def sweep_args(runs: int, steps: int) -> list[str]:
    return ["-m", "loss=rosenbrock", "init=[-1.5,2.0]", "optimizer=gd",
            f"optimizer.lr=logspace(1e-5,1e-2,{runs})", f"stopping.maxiter={steps}"]


def gdexp_end_to_end(folder: Path, runs: int, steps: int) -> float:
    exe = Path(sys.executable).with_name("gdexp")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    t0 = time.perf_counter()
    done = subprocess.run([str(exe), *sweep_args(runs, steps)], cwd=folder, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(done.stderr)
    return elapsed


def script_startup() -> float:
    """What any floor *script* pays before its first call: Python plus `import mlflow`."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient"], check=True)
    return time.perf_counter() - t0


def tutorial_slice(folder: Path, jobs: int, steps: int) -> float:
    lrs = ",".join(f"{v:.6g}" for v in np.logspace(-5, -3, jobs))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/tutorial-{steps}.db"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / "tutorial_app.py"), "-m", f"lr={lrs}", f"steps={steps}",
                    f"hydra.sweep.dir={folder}/tutorial-{steps}"], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def gdexp_records(specs, trajs) -> list:
    """The runs as gdexp logs them (params, tags, sampled curves, summary metrics), as RunRecords."""
    from gdexp.tracking import content
    from gdexp.tracking.fast.records import RunRecord

    return [RunRecord("0", spec.run_name, tags={**content.identity_tags(spec), **content.status_tags(traj)},
                      params=content.params(spec.config),
                      metrics=content.run_metrics(spec, traj, spec.config["tracking"]["curve_points"], 0))
            for spec, traj in zip(specs, trajs)]


def bare_loop(lrs: np.ndarray, steps: int) -> float:
    """x -= lr * grad over the same (B, 2) batch, keeping the loss of every step."""
    x = np.tile([-1.5, 2.0], (len(lrs), 1))
    lr = lrs[:, None]
    losses = np.empty((steps + 1, len(lrs)))
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        for t in range(steps + 1):
            a, b = x[:, 0], x[:, 1]
            r = b - a * a
            losses[t] = (1 - a) ** 2 + 100 * r * r
            g = np.column_stack([-2 * (1 - a) - 400 * a * r, 200 * r])
            x = x - lr * g
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--tutorial-jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="repeat the end-to-end and floor timings")
    args = parser.parse_args()

    from gdexp.hydra.grids import logspace
    from gdexp.specs.batch import execute

    lrs = logspace(1e-5, 1e-2, args.runs)
    specs = compose_specs([["loss=rosenbrock", "init=[-1.5,2.0]", "optimizer=gd", f"optimizer.lr={lr!r}",
                            f"stopping.maxiter={args.steps}"] for lr in lrs])
    # The first descent pays page faults on its fresh curve arrays (loss, grad
    # norm and parameters at every step: ~320 MB here); later ones reuse memory.
    t_descent, t_bare = [], []
    for _ in range(3):
        trajs = None  # free the last result first, as a fresh process would have nothing
        t0 = time.perf_counter()
        trajs = execute(specs)
        t_descent.append(time.perf_counter() - t0)
        t_bare.append(bare_loop(np.array(lrs), args.steps))
    steps_run = sum(tr.iterations + 1 for tr in trajs)

    records = gdexp_records(specs, trajs)
    t_gdexp, t_floor, t_raw = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t_gdexp.append(gdexp_end_to_end(Path(tmp), args.runs, args.steps))
            t_raw.append(sqlite_floor(Path(tmp) / "raw.db", records, None))
            t_floor.append(script_startup() + floor_write(f"sqlite:///{tmp}/floor.db", specs, trajs))
    with tempfile.TemporaryDirectory() as tmp:
        short, long = 200, 800
        a = tutorial_slice(Path(tmp), args.tutorial_jobs, short)
        b = tutorial_slice(Path(tmp), args.tutorial_jobs, long)
    per_step = (b - a) / (args.tutorial_jobs * (long - short))
    per_job = a / args.tutorial_jobs - (short + 1) * per_step
    t_tutorial = args.runs * per_job + steps_run * per_step

    g, f, r = median(t_gdexp), median(t_floor), median(t_raw)
    points = sum(len(rec.metrics) for rec in records)
    print(f"workload: {args.runs} lrs x {args.steps} steps, GD on Rosenbrock; {steps_run:,} steps run, "
          f"{points:,} metric points logged")
    print(f"1. gdexp end to end        {g:9.1f} s")
    print(f"2. raw-SQLite floor        {r:9.2f} s   ({r / points * 1e6:.1f} us per point)")
    print(f"   gdexp / raw floor       {g / r:9.2f}x   (target <= 5x)")
    print(f"3. MLflow floor            {f:9.1f} s   ({f / points * 1e6:.0f} us per point)")
    print(f"   gdexp / MLflow floor    {g / f:9.2f}x")
    print(f"4. tutorial app (est.)     {t_tutorial:9.0f} s = {t_tutorial / 3600:.2f} h   "
          f"({per_job * 1e3:.0f} ms per job + {per_step * 1e3:.2f} ms per step, from {args.tutorial_jobs} jobs "
          f"x {short} and x {long} steps)")
    print(f"   tutorial / gdexp        {t_tutorial / g:9.0f}x")
    print(f"5. descent, gdexp          {median(t_descent):9.2f} s   (median of 3; first, cold memory: {t_descent[0]:.2f} s)")
    print(f"   bare numpy loop         {median(t_bare):9.2f} s   (records the loss only)")
    print(f"   gdexp / bare            {median(t_descent) / median(t_bare):9.2f}x   (target <= 2x)")


if __name__ == "__main__":
    main()
