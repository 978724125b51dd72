"""How long `gdexp report` takes on a sweep of 1,000 runs of 10,000 steps each.

    python benchmarks/bench_report.py                  # build a fresh store in /tmp, time 3 reports
    python benchmarks/bench_report.py --store DIR      # reuse (or first build) the store in DIR

The sweep is made by gdexp itself (`gdexp -m ...`, its batched launcher): Rosenbrock
(2-D, so the contour plot and both GIFs are drawn) under plain GD, lr log-spaced
over 1e-5..3e-3 (the top ones diverge), tolerance off so every run that does not
diverge takes all 10,000 steps. Only `tracking.curve_points` is lowered, to 100,
to cut the time spent in MLflow's log_batch: the report never reads those
metrics, it reads every curve.parquet in full. The report is timed as a user
runs it, a fresh `gdexp report` process each time, against a floor measured
in the same run: a fresh process that only reads what the report reads (the
runs table and every curve.parquet).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS, STEPS = 1000, 10_000
REPO = Path(__file__).resolve().parents[1]  # this checkout's gdexp, whatever is installed
_GDEXP = "import sys; from gdexp.commands.main import main; main(sys.argv[1:])"
# The floor: the imports, the runs table and every curve, nothing drawn.
_READ = ("import sys; from gdexp.tracking.reader import load_curve, load_runs; runs = load_runs(); "
         "[load_curve(r.run_id, artifact_uri=r.artifact_uri) for r in runs.itertuples()]")


def gdexp(folder: Path, *args: str, code: str = _GDEXP) -> float:
    """Run `gdexp ARGS` (or the Python `code`) in `folder` on its store; returns the wall time in seconds."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": path}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], cwd=folder, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, help="folder of the benchmark store (reused when it has one)")
    p.add_argument("--repeat", type=int, default=3, help="report builds timed (median printed)")
    p.add_argument("--runs", type=int, default=RUNS)
    p.add_argument("--steps", type=int, default=STEPS)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="gdexp-bench-") as tmp:
        folder = (args.store or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "mlflow.db").exists():
            took = gdexp(folder, "-m", "loss=rosenbrock", "optimizer=gd",
                         f"optimizer.lr=logspace(1e-5,3e-3,{args.runs})", f"stopping.maxiter={args.steps}",
                         "stopping.gtol=0", "tracking.curve_points=100", "hydra.sweep.dir=multirun")
            print(f"sweep of {args.runs} runs x {args.steps} steps made in {took:.1f} s", flush=True)
        floor = [gdexp(folder, code=_READ) for _ in range(args.repeat)]
        times = [gdexp(folder, "report", "--out", str(folder / "report")) for _ in range(args.repeat)]
        report, read = statistics.median(times), statistics.median(floor)
        html = (folder / "report" / "report.html").stat().st_size / 1e6
        print(f"gdexp report, {args.runs} runs x {args.steps} steps: median {report:.1f} s "
              f"of {len(times)} builds ({', '.join(f'{t:.1f}' for t in times)} s); report.html {html:.1f} MB")
        print(f"floor (read the runs and every curve, draw nothing): median {read:.1f} s; "
              f"report / floor = {report / read:.2f}x")


if __name__ == "__main__":
    main()
