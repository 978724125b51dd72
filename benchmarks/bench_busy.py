"""How much slower one MLP run gets while two other processes keep the cores busy.

    python benchmarks/bench_busy.py [--steps 300] [--repeat 3]

Each timing is a fresh `gdexp loss=mlp stopping.maxiter=STEPS` (digits, a 64-unit hidden
layer, a fresh SQLite store), end to end. Three settings, each timed on the machine as it
is ("quiet") and then beside two busy-loop processes (`while True: pass`) started for it:

- gdexp as it is: one BLAS thread per descending process (gdexp.core.threads);
- BLAS threads as the library picks them (OPENBLAS_NUM_THREADS = the core count: what
  gdexp did before), the cause of the 10-20x slowdown;

printed as busy / quiet for each, with CPU seconds (user + sys) of the gdexp process: BLAS
threads that spin while they wait burn CPU that the run does not use. Two busy processes
beside one run on a machine of C cores leave it about C / 3 of the CPU where C < 3: the
slowdown that alone explains (1.5x on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_GDEXP = "import sys; from gdexp.commands.main import main; main(sys.argv[1:])"


@contextmanager
def busy(processes: int):
    """`processes` busy loops while inside; killed (each by its pid) on exit."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def one_run(steps: int, blas: str | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh gdexp MLP run."""
    with tempfile.TemporaryDirectory(prefix="gdexp-busy-") as tmp:
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "MLFLOW_DISABLE_TELEMETRY": "true",
               "PYTHONPATH": path}
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GDEXP_BLAS_THREADS"):
            env.pop(name, None)
        if blas is not None:
            env["OPENBLAS_NUM_THREADS"] = blas
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", _GDEXP, "loss=mlp", f"stopping.maxiter={steps}", "stopping.gtol=0"],
                       cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeat", type=int, default=3, help="timings per setting (median printed)")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} cores, load average {os.getloadavg()[0]:.1f} at the start; MLP run of {args.steps} steps; "
          f"medians of {args.repeat}")
    for label, blas in (("gdexp (1 BLAS thread)", None), (f"{cores} BLAS threads (before)", str(cores))):
        quiet, loaded = [], []
        for _ in range(args.repeat):  # interleaved: a change in the machine's load hits both alike
            quiet.append(one_run(args.steps, blas))
            with busy(2):
                loaded.append(one_run(args.steps, blas))
        q, b = (statistics.median(t[0] for t in x) for x in (quiet, loaded))
        qc, bc = (statistics.median(t[1] for t in x) for x in (quiet, loaded))
        print(f"{label:>28}: quiet {q:6.1f} s (CPU {qc:5.1f} s), beside 2 busy loops {b:6.1f} s "
              f"(CPU {bc:5.1f} s): busy / quiet = {b / q:.2f}x", flush=True)
    print(f"lost CPU share alone: {max(1.0, 3 / cores):.2f}x on {cores} cores")


if __name__ == "__main__":
    main()
