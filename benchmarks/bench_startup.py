"""Issue 21 (b, c, e): how long the `gdexp` command takes to start, to refuse, to run one run and a small sweep and report
on it, against `import numpy`.

    python benchmarks/bench_startup.py [--quick] [--repeat 5] [--base COMMIT]

Each command runs in a fresh process (wall clock from spawn to exit), in an empty folder
with MLFLOW_TRACKING_URI pointing into it:

    import numpy               python -c "import numpy": the baseline, what any gdexp command imports
    gdexp --help
    refused value              gdexp optimizer.lr=-1
    refused value in a sweep   gdexp -m optimizer.lr=0.1,-1
    refused by Hydra's path    gdexp optimizer.lr=-1 hydra.job.chdir=false (a key of Hydra's: the
                               check before Hydra leaves the command line to it)
    a single run, new store    gdexp (the defaults: 1,000 steps on rosenbrock) in an empty folder
    a single run               gdexp, into a store that holds the earlier rounds' runs (one folder
                               per code tree, kept across the rounds)
    a sweep                    gdexp -m optimizer.lr=0.1,0.01: two runs and the sweep's parent run,
                               its summary and its files, into that store
    a report                   gdexp report: that sweep's report (figures, tables, attached to its
                               parent run)

Each round runs every command once, so load on the machine hits all alike; printed: the
median of the rounds for each command and its ratio to the baseline's median, and the load
average before and after. A refused command must print its one line and exit 2, leaving
neither a store nor an output folder, or the benchmark stops: a broken refusal is not timed.

With --base COMMIT the commands are also timed on that commit's code (`git archive` of gdexp/,
conf/ and hydra_plugins/), in the same rounds.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

REPO = Path(__file__).resolve().parents[1]
# As the console script runs it (pyproject's [project.scripts]).
GDEXP = "import sys; from gdexp.commands.main import main; sys.exit(main())"
BASELINE = "import numpy"

# (label, arguments of `gdexp` or None for the baseline, the refusal's line or None)
COMMANDS = [
    ('python -c "import numpy"', None, None),
    ("gdexp --help", ["--help"], None),
    ("gdexp optimizer.lr=-1", ["optimizer.lr=-1"], "gdexp: error: optimizer.lr=-1: must be finite and > 0"),
    ("gdexp -m optimizer.lr=0.1,-1", ["-m", "optimizer.lr=0.1,-1"],
     "gdexp: error: optimizer.lr=-1: must be finite and > 0 (job #1: optimizer.lr=-1)"),
    ("gdexp optimizer.lr=-1 hydra.job.chdir=false", ["optimizer.lr=-1", "hydra.job.chdir=false"],
     "gdexp: error: optimizer.lr=-1: must be finite and > 0"),
    ("gdexp  (a single run, new store)", [], None),
    ("gdexp  (a single run, store kept)", [], None),
    ("gdexp -m optimizer.lr=0.1,0.01  (a sweep, store kept)", ["-m", "optimizer.lr=0.1,0.01"], None),
    ("gdexp report  (that sweep, store kept)", ["report"], None),
]
KEPT = "store kept"


def run_once(code_path: Path, args: list[str] | None, refusal: str | None, threads: int,
             folder: Path | None = None) -> float:
    """Seconds of one fresh process (in `folder`, else an empty one); exits the benchmark if a
    refusal is not the expected one, or a run did not say where it is recorded."""
    with tempfile.TemporaryDirectory(prefix="gdexp-startup-") as tmp:
        tmp = str(folder or tmp)
        env = {**os.environ, "PYTHONPATH": str(code_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
               "MLFLOW_DISABLE_TELEMETRY": "true", "OPENBLAS_NUM_THREADS": str(threads),
               "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        argv = [sys.executable, "-c", BASELINE] if args is None else [sys.executable, "-c", GDEXP, *args]
        t0 = time.perf_counter()
        done = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        left = sorted(p.name for p in Path(tmp).iterdir())
    records = refusal is None and args not in (None, ["--help"])  # a run or a sweep: it says where it is
    said = "Report of sweep" if args and args[0] == "report" else "Runs are in sqlite:"
    if refusal is None and done.returncode == 0 and (not records or said in done.stdout):
        return seconds
    if refusal is not None and (done.returncode, done.stderr.strip(), left) == (2, refusal, []):
        return seconds
    sys.exit(f"{code_path}: {' '.join(args or [BASELINE])}: exit {done.returncode}, left {left}\n"
             f"{done.stderr[-2000:]}")


def base_tree(commit: str, folder: Path) -> Path:
    """gdexp/, conf/ and hydra_plugins/ of `commit`, extracted into `folder`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "gdexp", "conf", "hydra_plugins"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    parser = common.parser(__doc__, "3 rounds", "numpy's BLAS (OpenMP, OpenBLAS, MKL)")
    parser.set_defaults(repeat=5)
    parser.add_argument("--base", help="also time this commit's code, in the same rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="gdexp-base-") as tmp:
        trees = {"today": REPO}
        if args.base:
            trees[args.base] = base_tree(args.base, Path(tmp))
        times: dict[tuple[str, str], list[float]] = {}
        load_before = os.getloadavg()[0]
        kept = {tree: Path(tempfile.mkdtemp(prefix="kept-", dir=tmp)) for tree in trees}
        for _ in range(rounds):
            for tree, path in trees.items():
                for label, cmd, refusal in COMMANDS:
                    if cmd is None and tree != "today":
                        continue  # one baseline: it does not import gdexp
                    folder = kept[tree] if KEPT in label else None
                    times.setdefault((tree, label), []).append(run_once(path, cmd, refusal, args.threads, folder))
        load_after = os.getloadavg()[0]
    baseline = statistics.median(times[("today", COMMANDS[0][0])])
    print(f"start-up, medians of {rounds} fresh processes; load average {load_before:.1f} before, "
          f"{load_after:.1f} after; {args.threads} BLAS thread(s):")
    for tree in trees:
        for label, cmd, _ in COMMANDS:
            if (tree, label) not in times:
                continue
            m = statistics.median(times[(tree, label)])
            name = label if tree == "today" else f"{label}  [{tree}]"
            spread = ", ".join(f"{t:.2f}" for t in times[(tree, label)])
            print(f"  {name:<56} {m:6.3f} s  {m / baseline:5.2f}x   (all: {spread})")


if __name__ == "__main__":
    main()
