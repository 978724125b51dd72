"""How long `gdexp.load_runs` takes, and its peak memory, on sweeps of 1,000 / 10,000 / 100,000 runs.

    python benchmarks/bench_load_runs.py                      # 1,000 and 10,000 runs, both readers
    python benchmarks/bench_load_runs.py --runs 1000 10000 100000 --client-max 10000

The store is made once per size: a real sweep by gdexp (`gdexp -m`, Rosenbrock under GD, two
seeds, the top learning rates diverge), whose runs are then copied, each copy with its own run
id and learning rate, into the same sweep through the fast write path (the rows MLflow would
write: params, tags, summary metrics; the curve points are left out: load_runs never reads
them). Each reading is a fresh process (`python -c 'import gdexp; gdexp.load_runs(sweep=...)'`)
that prints its wall time and peak RSS: the fast reader (MLflow's SQL tables, the default
where the fence allows) against MLflow's client (search_runs, what load_runs did before),
the baseline, for the sizes up to --client-max (MLflow's client needs ~4.8 GB at 100,000).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_READ = ("import json, resource, sys, time; t0 = time.perf_counter(); "
         "from gdexp.tracking.reader import runs_table; "
         "t = runs_table(sys.argv[1], sweep=sys.argv[2], fast=json.loads(sys.argv[3])); "
         "u = resource.getrusage(resource.RUSAGE_SELF); "
         "print(json.dumps([len(t), time.perf_counter() - t0, u.ru_maxrss / 2**20, u.ru_utime + u.ru_stime]))")


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": path}


def make_store(folder: Path, runs: int) -> tuple[str, str]:
    """A store holding one sweep of `runs` runs; (uri, sweep parent id)."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**_env(), "MLFLOW_TRACKING_URI": uri}
    subprocess.run([sys.executable, "-c", "import sys; from gdexp.commands.main import main; main(sys.argv[1:])",
                    "-m", "loss=rosenbrock", "optimizer=gd", "optimizer.lr=logspace(1e-4,1e-2,10)", "seed=0,1",
                    "stopping.maxiter=200", "hydra.sweep.dir=multirun"],
                   cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sys.path.insert(0, str(REPO))
    import sqlite3

    import numpy as np

    from gdexp.tracking.fast.records import RunRecord
    from gdexp.tracking.fast.write import write_runs

    db = sqlite3.connect(folder / "mlflow.db")
    parent, exp = db.execute("SELECT r.run_uuid, r.experiment_id FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                             "AND t.key = 'gdexp.sweep' AND t.value = 'true'").fetchone()
    children = [r for (r,) in db.execute("SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = ?",
                                         (parent,))]
    templates = []
    for run in children:
        def rows(sql):
            return db.execute(sql, (run,)).fetchall()

        templates.append((dict(rows("SELECT key, value FROM params WHERE run_uuid = ?")),
                          {k: v for k, v in rows("SELECT key, value FROM tags WHERE run_uuid = ?")
                           if k != "mlflow.runName"},
                          rows("SELECT key, CASE WHEN is_nan THEN 'nan' ELSE value END, timestamp, step "
                               "FROM latest_metrics WHERE run_uuid = ?")))
    db.close()
    rng = np.random.default_rng(0)
    todo, batch = runs - len(children), []
    for i in range(todo):
        params, tags, metrics = templates[i % len(templates)]
        lr = float(10 ** rng.uniform(-4, -2))
        params = {**params, "optimizer.lr": repr(lr)}
        points = [(k, lr if k in ("lr", "optimizer.lr") else float(v), ts, step) for k, v, ts, step in metrics]
        batch.append(RunRecord(str(exp), run_name=f"copy-{i}-lr={lr:.3g}", tags=tags, params=params, metrics=points))
        if len(batch) == 5000 or i == todo - 1:
            write_runs(uri, batch)
            batch = []
    return uri, parent


def read(uri: str, sweep: str, fast: bool) -> tuple[int, float, float, float]:
    """(rows, wall seconds, peak RSS in GB, CPU seconds) of a fresh process that reads the sweep."""
    out = subprocess.run([sys.executable, "-c", _READ, uri, sweep, json.dumps(fast)], env=_env(), check=True,
                         capture_output=True, text=True).stdout
    return tuple(json.loads(out.strip().splitlines()[-1]))


def _figures(readings) -> str:
    return (f"{statistics.median(r[1] for r in readings):6.2f} s (CPU {statistics.median(r[3] for r in readings):.2f} s), "
            f"peak {max(r[2] for r in readings):.2f} GB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, nargs="+", default=[1000, 10_000])
    p.add_argument("--client-max", type=int, default=10_000, help="largest size also read through MLflow's client")
    p.add_argument("--repeat", type=int, default=3, help="readings per size and reader (median printed)")
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; medians of {args.repeat} fresh processes")
    for runs in args.runs:
        with tempfile.TemporaryDirectory(prefix="gdexp-bench-") as tmp:
            uri, sweep = make_store(Path(tmp), runs)
            fast = [read(uri, sweep, True) for _ in range(args.repeat)]
            assert all(f[0] == runs for f in fast), fast
            line = f"{runs:>7,} runs: fast reader {_figures(fast)}"
            if runs <= args.client_max:
                slow = [read(uri, sweep, False) for _ in range(args.repeat)]
                ratio = statistics.median(s[1] for s in slow) / statistics.median(f[1] for f in fast)
                line += f"; MLflow's client {_figures(slow)}; client / fast = {ratio:.1f}x (wall)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
