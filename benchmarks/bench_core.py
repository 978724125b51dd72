"""Issue 2's figures: one 10,000-step run and a 100-config batch, MLflow logging included.

    python benchmarks/bench_core.py [--repeat 3]

Prints medians and ratios against baselines measured in the same process:
recording vs the plain-MLflow floor (same points, one log_batch per run), and
a batched descent vs the same configs descended one at a time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compose_specs, floor_write, median, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from gdexp.specs.batch import execute
    from gdexp.tracking.record import write_run
    from gdexp.tracking.store import open_store

    def record(store, spec, result, tmp):
        write_run(store, spec, lambda: result, parent_id=None, keep_dir=Path(tmp), swallow=False, done=True)

    one = compose_specs([["loss=rosenbrock", "optimizer.lr=0.001", "stopping.maxiter=10000", "stopping.gtol=0"]])
    batch = compose_specs([["loss=rosenbrock", f"optimizer.lr={lr:.6g}", "stopping.maxiter=10000"]
                           for lr in np.logspace(-5, -2, 100)])
    t: dict = {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            with timed(t, "one: descent"):
                (traj,) = execute(one)
            store = open_store(f"sqlite:///{tmp}/g.db", "bench")  # store creation not timed: same for both
            store.experiment_id  # noqa: B018 - the experiment made before the timing, too
            with timed(t, "one: record"):
                record(store, one[0], traj, tmp)
            t.setdefault("one: floor record", []).append(floor_write(f"sqlite:///{tmp}/f.db", one, [traj], with_store=False))
            with timed(t, "batch: descent, batched"):
                trajs = execute(batch)
            with timed(t, "batch: descent, one at a time"):
                for spec in batch:
                    execute([spec])
            store = open_store(f"sqlite:///{tmp}/g2.db", "bench")
            store.experiment_id  # noqa: B018
            with timed(t, "batch: record"):
                for spec, tr in zip(batch, trajs):
                    record(store, spec, tr, tmp)
            t.setdefault("batch: floor record", []).append(floor_write(f"sqlite:///{tmp}/f2.db", batch, trajs, with_store=False))
    for key, values in t.items():
        print(f"{key:34s} median {median(values):8.3f} s   (n={len(values)})")
    m = {k: median(v) for k, v in t.items()}
    print(f"one run: record / floor            {m['one: record'] / m['one: floor record']:.2f}x")
    print(f"100 runs: record / floor           {m['batch: record'] / m['batch: floor record']:.2f}x")
    print(f"100 runs: one-at-a-time / batched  {m['batch: descent, one at a time'] / m['batch: descent, batched']:.1f}x faster batched")
    print(f"100 runs: end to end (descent + record) {m['batch: descent, batched'] + m['batch: record']:.2f} s")


if __name__ == "__main__":
    main()
