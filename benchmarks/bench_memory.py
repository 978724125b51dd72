"""Issue 14's memory figures: peak RSS and wall time of sweeps far larger than memory would hold at once.

    python benchmarks/bench_memory.py                       # every case below (tens of minutes)
    python benchmarks/bench_memory.py --case long --case wide

Each case is one `gdexp` command (GD on Rosenbrock from (-1.5, 2), stopping.gtol=0 so no run
stops early, a fresh SQLite store in a temporary folder), run as a user runs it, in a child
process; its peak resident memory is the child's ru_maxrss. The bound gdexp keeps: one chunk
of curve records (gdexp.specs.batch.CHUNK_BYTES, 512 MiB) plus what the process holds anyway
(Python, numpy, Hydra, MLflow: ~0.4-0.6 GB), so under 2 GB for any sweep on this loss. Before
chunking, the descent held every curve of a batch: runs x steps x 4 x 8 bytes (32 GB for
10,000 x 100,000). After each sweep, load_runs reads the sweep back (its time is printed).

Cases (runs x steps):
  long     1 x 10,000,000        one very long run
  deep     1,000 x 100,000       (3.2 GB of curves held at once before chunking)
  wide     10,000 x 10,000       (3.2 GB)
  many     100,000 x 1,000       one sweep, one parent: summary, progress bar and load_runs at scale
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {"long": (1, 10_000_000), "deep": (1000, 100_000), "wide": (10_000, 10_000), "many": (100_000, 1000)}


def run_case(runs: int, steps: int, folder: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in GB of the gdexp process, load_runs seconds)."""
    lrs = "0.001" if runs == 1 else f"logspace(1e-5,1e-3,{runs})"
    cmd = [sys.executable, "-c", "from gdexp.commands.main import main; main()", "-m", "loss=rosenbrock",
           "optimizer=gd", f"optimizer.lr={lrs}", f"stopping.maxiter={steps}", "stopping.gtol=0",
           "hydra.sweep.dir=sweep"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # A wrapper per case: RUSAGE_CHILDREN's ru_maxrss is the largest child a process ever had.
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
               "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    peak = int(done.stdout.split()[-1])  # KiB
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gdexp; print(len(gdexp.load_runs()))"], cwd=folder, env={
        **env, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}, check=True, capture_output=True)
    return wall, peak * 1024 / 1e9, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="default: every case")
    args = parser.parse_args()
    for name in args.case or ["long", "deep", "wide", "many"]:
        runs, steps = CASES[name]
        with tempfile.TemporaryDirectory(prefix="gdexp-bench-") as tmp:
            wall, peak, read = run_case(runs, steps, Path(tmp))
        before_chunking = runs * (steps + 1) * 4 * 8 / 1e9
        print(f"{name:5s} {runs:>7,} runs x {steps:>10,} steps: {wall:8.1f} s, peak RSS {peak:5.2f} GB "
              f"(curves held at once before chunking: {before_chunking:.1f} GB), load_runs {read:.1f} s")


if __name__ == "__main__":
    main()
