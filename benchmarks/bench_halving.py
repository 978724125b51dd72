"""Issue 22's figures: successive halving inside the batch against the full grid.

    python benchmarks/bench_halving.py [--quick] [--repeat 3]

Two sweeps, each descended twice in one process, interleaved per repeat (a
busy machine slows both alike): the full grid (stopping.prune=none) and the
same grid with stopping.prune=halving. Printed per sweep: the best final
result among the runs that finished (survivors), the run-steps (the sum of
the runs' iterations) and the descent's wall time (gdexp.specs.batch.execute:
the vectorized descent; recording the runs in MLflow is not included), as
ratios halving / full, medians over the repeats.

- reference: 1,000 learning rates log-spaced 1e-5..1e-2, GD on Rosenbrock from
  (-1.5, 2) (the loss's default start), 10,000 steps, the other stopping rules
  at their defaults; halving at eta 3 from step 100 (the defaults). Targets:
  best final loss within 1% of the grid's, <= 40% of its run-steps, <= 50% of
  its wall time.
- mlp_lr: the named sweep's settings (sweeps/mlp_lr.yaml: digits, 64-16-10 relu,
  gd and adam x 11 learning rates, 150 full-batch steps, evaluations every 25),
  halving at eta 3 from step 10 (a 150-step budget leaves the default first rung,
  100, no room). Target: each optimizer's best val_accuracy within 0.5 points of
  the grid's, <= 40% of the run-steps, <= 50% of the wall time.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import compose_specs, median  # noqa: E402

MLP = ["loss=mlp", "loss.dataset=digits", "loss.hidden=[16]", "loss.activation=relu", "stopping.maxiter=150",
       "stopping.gtol=0", "tracking.eval_every=25"]


def sweeps(quick: bool) -> dict[str, tuple[list[list[str]], str, list[str]]]:
    """name -> (each run's overrides, the metric compared, the halving overrides)."""
    n, steps = (200, 3000) if quick else (1000, 10000)
    rosen = [["loss=rosenbrock", "optimizer=gd", f"optimizer.lr={lr!r}", f"stopping.maxiter={steps}"]
             for lr in np.logspace(-5, -2, n).tolist()]
    mlp = [[*MLP, f"optimizer={opt}", f"optimizer.lr={lr!r}"]
           for opt in ("gd", "adam") for lr in np.logspace(-3, 2, 11).tolist()]
    return {"reference (rosenbrock)": (rosen, "final_loss", ["stopping.prune=halving"]),
            "mlp_lr": (mlp, "val_accuracy", ["stopping.prune=halving", "stopping.prune_min_steps=10"])}


def best(specs, results, metric: str) -> dict[str, float]:
    """Per optimizer, the best metric among runs that finished and did not diverge."""
    out: dict[str, float] = {}
    for spec, r in zip(specs, results):
        if r.status not in ("converged", "max_iters"):
            continue
        value = r.final_loss if metric == "final_loss" else float(r.events[metric][1][-1])
        key = spec.config["optimizer"]["name"]
        better = min if metric == "final_loss" else max
        out[key] = better(out.get(key, value), value)
    return out


def main() -> None:
    parser = common.parser(__doc__, "200 lrs x 3,000 steps for the reference sweep", "numpy's BLAS")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from gdexp.specs.batch import execute

    threadpool_limits(args.threads)

    for name, (runs, metric, halving) in sweeps(args.quick).items():
        specs = {"full": compose_specs(runs), "halving": compose_specs([[*r, *halving] for r in runs])}
        times: dict[str, list[float]] = {k: [] for k in specs}
        results = {}
        for _ in range(args.repeat):
            for kind, batch in specs.items():
                t0 = time.perf_counter()
                results[kind] = execute(batch)
                times[kind].append(time.perf_counter() - t0)
        steps = {k: sum(r.iterations for r in v) for k, v in results.items()}
        found = {k: best(specs[k], v, metric) for k, v in results.items()}
        pruned = sum(r.status == "pruned" for r in results["halving"])
        print(f"{name}: {len(runs)} runs, {pruned} pruned")
        for opt in found["full"]:
            full, kept = found["full"][opt], found["halving"].get(opt, np.nan)
            if metric == "final_loss":
                print(f"  {opt}: best {metric} full {full:.6g}, survivors {kept:.6g} "
                      f"(ratio {kept / full:.4f}; target <= 1.01)")
            else:
                print(f"  {opt}: best {metric} full {full:.4f}, survivors {kept:.4f} "
                      f"(difference {100 * (full - kept):.2f} points; target <= 0.5)")
        print(f"  run-steps: full {steps['full']:,}, halving {steps['halving']:,} "
              f"(ratio {steps['halving'] / steps['full']:.3f}; target <= 0.40)")
        t_full, t_half = median(times["full"]), median(times["halving"])
        print(f"  descent wall time (median of {args.repeat}): full {t_full:.2f} s, halving {t_half:.2f} s "
              f"(ratio {t_half / t_full:.3f}; target <= 0.50)")


if __name__ == "__main__":
    main()
