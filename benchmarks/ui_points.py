"""What MLflow's UI draws of a gdexp curve logged with `tracking.curve_points` = k.

    python benchmarks/ui_points.py

MLflow 3.17's run charts (RunsCharts line chart, mlflow/server/js/build/static/js
chunks 9867 and 4751) fetch each run's curve with
    GET ajax-api/2.0/mlflow/metrics/get-history-bulk-interval
        ?run_ids=...&metric_key=...&max_results=320[&start_step=..&end_step=..]
(100 runs a request; a zoom fetches again with the step range). The server
(SqlAlchemyStore.get_metric_history_bulk_interval) splits the run's rows, ordered
by step, into NTILE(320) buckets and keeps the first row of each, plus the last row.

For three Rosenbrock GD curves of 10,000 steps, this logs k points chosen by
gdexp's sample_steps, asks the store exactly what the chart asks, and prints how
many points are drawn, whether the best step and the step of the largest jump up
(loss[t] / loss[t-1]; the spike, an oscillation's worst bounce) are among them,
the widest gap between drawn steps, and the largest error of the drawn polyline
against the full curve (log10 units, i.e. decades).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gdexp.tracking.fast.records import RunRecord  # noqa: E402
from gdexp.tracking.fast.write import write_runs  # noqa: E402
from gdexp.tracking.sampling import sample_steps  # noqa: E402

UI_MAX_RESULTS = 320  # maxResults in MLflow 3.17's chart code


def rosenbrock_gd(lr: float, steps: int = 10_000) -> np.ndarray:
    """Loss of plain GD on Rosenbrock from (-1.5, 2) at every step."""
    x = np.array([-1.5, 2.0])
    out = np.empty(steps + 1)
    for t in range(steps + 1):
        a, b = x
        r = b - a * a
        out[t] = (1 - a) ** 2 + 100 * r * r
        x = x - lr * np.array([-2 * (1 - a) - 400 * a * r, 200 * r])
    return out


def main() -> None:
    from mlflow import MlflowClient

    spiky = rosenbrock_gd(1e-3)
    spiky[4321] *= 50
    curves = {"smooth, lr=1e-3": rosenbrock_gd(1e-3), "edge of stability, lr=2e-3": rosenbrock_gd(2e-3),
              "one-step spike at 4321": spiky}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/ui.db"
        cl = MlflowClient(tracking_uri=uri)
        exp = cl.create_experiment("ui")
        store = cl._tracking_client.store  # the handler behind the endpoint calls exactly this
        print(f"{'curve':<28}{'k':>6}{'drawn':>7}{'best':>7}{'jump':>7}{'widest gap':>12}{'max error':>11}")
        for name, loss in curves.items():
            best, jump = int(np.argmin(loss)), int(np.argmax(loss[1:] / loss[:-1]) + 1)
            for k in (100, 200, 320, 500, 1000, 2000):
                steps = sample_steps(loss, k, [best])
                (run_id,) = write_runs(uri, [RunRecord(exp, run_name=f"{name} k={k}", metrics=[
                    ("loss", float(loss[s]), 0, int(s)) for s in steps])])
                drawn = store.get_metric_history_bulk_interval([run_id], "loss", UI_MAX_RESULTS, None, None)
                s = np.array([m.step for m in drawn])
                line = np.interp(np.arange(len(loss)), s, np.log10([m.value for m in drawn]))
                error = np.max(np.abs(line - np.log10(loss)))
                print(f"{name:<28}{k:>6}{len(s):>7}{'yes' if best in s else 'no':>7}"
                      f"{'yes' if jump in s else 'no':>7}{int(np.max(np.diff(s))):>12}{error:>11.3f}")


if __name__ == "__main__":
    main()
