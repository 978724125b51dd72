"""Issue 22's table: how far the range test's suggestion lies from the grid's answers, per built-in loss.

    python benchmarks/bench_range_test.py [--seeds 5] [--losses quadratic,mlp]

For each loss, `gdexp +sweep=lr_range_test LOSS seed=0,...` (the sweep's
defaults: ramp 1e-8 -> 1 over 100 updates, stop at 4x the best loss, 13-point
grid, the grid's runs 1,000 steps; the MLP: digits 64-16-10 relu, 300 steps),
each in a fresh store; printed as a Markdown table: the per-seed ratios
suggested_lr / best_lr and suggested_lr / max_stable_lr (median, and the
range over the seeds; best_lr and max_stable_lr are the grid's, over the
seeds), and the step the range test stopped at. Losses whose data or start
do not depend on the seed give the same ratio for every seed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LOSSES = {
    "quadratic": ["loss=quadratic"],
    "rosenbrock": ["loss=rosenbrock"],
    "beale": ["loss=beale"],
    "booth": ["loss=booth"],
    "himmelblau": ["loss=himmelblau"],
    "rastrigin": ["loss=rastrigin"],
    "linear_regression": ["loss=linear_regression"],
    "logistic_regression": ["loss=logistic_regression"],
    "mlp": ["loss=mlp", "loss.dataset=digits", "loss.hidden=[16]", "loss.activation=relu", "stopping.maxiter=300",
            "stopping.gtol=0"],
}


def run(name: str, overrides: list[str], seeds: int) -> tuple[list[float], list[float], list[int]]:
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="gdexp-range-") as folder:
        uri = f"sqlite:///{Path(folder, 'mlflow.db')}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        seed_list = ",".join(str(s) for s in range(seeds))
        done = subprocess.run([sys.executable, "-c", "import sys; from gdexp.commands.main import main; "
                               "sys.exit(main())", "+sweep=lr_range_test", *overrides,
                               f"seed={seed_list}"], cwd=folder, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
        cl = MlflowClient(uri)
        parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0]
        tests = [r for r in cl.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
                 if r.data.tags.get("gdexp.lr_range_test") == "true"]
        m = parent.data.metrics
        suggested = [r.data.metrics.get("suggested_lr", np.nan) for r in tests]
        best = [s / m.get("best_lr", np.nan) for s in suggested]
        stable = [s / m.get("max_stable_lr", np.nan) for s in suggested]
        return best, stable, [int(r.data.metrics["iterations"]) for r in tests]


def _cell(values) -> str:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return "none"
    lo, mid, hi = np.min(v), np.median(v), np.max(v)
    return f"{mid:.3g}" if np.isclose(lo, hi, rtol=1e-9) else f"{mid:.3g} ({lo:.3g}-{hi:.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--losses", default=",".join(LOSSES))
    args = parser.parse_args()
    print("| loss | suggested_lr / best_lr | suggested_lr / max_stable_lr | range test stopped at step |")
    print("|---|---|---|---|")
    for name in args.losses.split(","):
        best, stable, steps = run(name, LOSSES[name], args.seeds)
        print(f"| {name} | {_cell(best)} | {_cell(stable)} | {_cell(steps)} |", flush=True)


if __name__ == "__main__":
    main()
