"""Issue 25: what live writes (tracking.live_every) cost a sweep end to end, on against off.

    python benchmarks/bench_live.py                        # the reference sweep and a long one, 3 times each
    python benchmarks/bench_live.py --runs 200 --repeat 1  # a quicker look

Two workloads, each run as a user types it (`gdexp -m ...` in a subprocess, fresh SQLite
store), with tracking.live_every=10 (the default), =1 (a write every second) and =0
(off), after one untimed warm-up, interleaved in rotating order so that load on the
machine hits all alike; medians printed, and each against off:
  reference  `--runs` learning rates log-spaced 1e-5..1e-2, GD on Rosenbrock from
             (-1.5, 2), 10,000 steps (benchmarks/bench_sweep.py's workload);
  long       20 learning rates log-spaced 1e-4..1e-1 on booth, `--long-steps` steps
             each (gtol=0: every step taken): the issue's sweep one watches.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median  # noqa: E402

SETTINGS = (10, 1, 0)


def reference(runs: int) -> list[str]:
    return ["-m", "loss=rosenbrock", "init=[-1.5,2.0]", "optimizer=gd", f"optimizer.lr=logspace(1e-5,1e-2,{runs})",
            "stopping.maxiter=10000"]


def long_sweep(steps: int) -> list[str]:
    return ["-m", "loss=booth", "optimizer.lr=logspace(1e-4,1e-1,20)", f"stopping.maxiter={steps}", "stopping.gtol=0"]


def end_to_end(args: list[str], live_every: float) -> float:
    """Seconds of `gdexp ARGS tracking.live_every=...` in a fresh folder and store."""
    exe = Path(sys.executable).with_name("gdexp")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GDEXP_PARENT_RUN_ID")}
    with tempfile.TemporaryDirectory(prefix="gdexp-live-") as folder:
        t0 = time.perf_counter()
        done = subprocess.run([str(exe), *args, f"tracking.live_every={live_every}"], cwd=folder, env=env,
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="learning rates of the reference sweep")
    parser.add_argument("--long-steps", type=int, default=300_000, help="steps of each run of the long sweep")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for name, argv in (("reference", reference(args.runs)), ("long", long_sweep(args.long_steps))):
        times: dict[float, list[float]] = {s: [] for s in SETTINGS}
        end_to_end(argv, 0)  # a warm-up, not timed: the first sweep pays cold caches and the store template
        for k in range(args.repeat):
            for setting in SETTINGS[k % 3:] + SETTINGS[:k % 3]:  # each setting first in turn
                times[setting].append(end_to_end(argv, setting))
        off = median(times[0])
        print(f"{name}: gdexp {' '.join(argv)}")
        for setting in SETTINGS:
            t = median(times[setting])
            print(f"  live_every={setting:<3g} {t:8.1f} s   {t / off:5.2f}x off   (all: "
                  f"{', '.join(f'{v:.1f}' for v in times[setting])})")


if __name__ == "__main__":
    main()
