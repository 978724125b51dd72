"""Issue 12's overhead figure: the reference sweep's descent before schedules, mini-batches and sharpness, and now.

    python benchmarks/bench_descent.py [--runs 1000] [--steps 10000] [--repeat 5] [--old 83d4c67]
    python benchmarks/bench_descent.py --base main [--mlp]   # today's loop against another commit's

The descent of the reference sweep (plain GD on Rosenbrock from (-1.5, 2), `--runs` learning
rates log-spaced 1e-5..1e-2, `--steps` steps, the default stopping rules) run by gdexp 0.1's
`gdexp.descent.descend` (the commit `--old`, extracted with `git archive`) and by today's
`gdexp.core.descent.descend` with a constant schedule and sharpness off, which must cost nothing
measurable. Each timing is a fresh subprocess (cold memory alike), old and new interleaved so
that load on the machine hits both alike; printed: medians and their ratio, and whether the
two give the same final losses bit for bit.

With --base COMMIT, the old side is today's code at COMMIT (the same script, `gdexp.core`), so a
change to the loop (the array API of issue 23) is measured against the loop before it; --mlp
times a mini-batch MLP sweep (digits, 32 runs x 300 steps, Adam, a cosine schedule) instead.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Each prints: seconds of the descent alone, then a checksum of the final losses.
COMMON = """
import time, hashlib, numpy as np
lrs = np.geomspace(1e-5, 1e-2, {runs})
x0 = np.tile([-1.5, 2.0], ({runs}, 1))
"""
OLD = COMMON + """
from gdexp.descent import Budget, descend
from gdexp.losses.classic import Rosenbrock
from gdexp.optimizers import gd
rows = [dict(max_iters={steps}, tol=1e-8, patience=0, min_delta=0.0, divergence_factor=1e4)] * {runs}
t0 = time.perf_counter()
out = descend(Rosenbrock(), gd(lr=lrs), x0, Budget.of(rows))
t = time.perf_counter() - t0
print(t, hashlib.sha256(np.array([(o.iterations, o.loss[-1]) for o in out]).tobytes()).hexdigest()[:16])
"""
NEW = COMMON + """
from gdexp.core.descent import Options, descend
from gdexp.core.losses.classic import Rosenbrock
from gdexp.core.optimizers import gd
from gdexp.core.stopping import StoppingRules
rows = [dict(maxiter={steps}, gtol=1e-8, patience=0, min_delta=0.0, divergence_factor=1e4)] * {runs}
t0 = time.perf_counter()
out = descend(Rosenbrock(), gd(lr=lrs), x0, StoppingRules.of(rows), Options())
t = time.perf_counter() - t0
print(t, hashlib.sha256(np.array([(o.iterations, o.loss[-1]) for o in out]).tobytes()).hexdigest()[:16])
"""


MLP = """
import time, hashlib, numpy as np
from gdexp.core.descent import Options, descend
from gdexp.core.losses.mlp import mlp
from gdexp.core.optimizers import adam
from gdexp.core.schedules import cosine
from gdexp.core.stopping import StoppingRules
loss = mlp("digits", hidden=[64])
lrs = np.geomspace(1e-4, 1e-1, {runs})
rules = StoppingRules.of([dict(maxiter={steps}, gtol=1e-8, patience=0, min_delta=0.0, divergence_factor=1e4)] * {runs})
x0 = np.tile(loss.default_init(), ({runs}, 1))
t0 = time.perf_counter()
out = descend(loss, adam(lr=lrs), x0, rules, Options(schedule=cosine(maxiter=rules.maxiter), batch_size=64,
              seeds=np.arange({runs}), eval_every=50))
t = time.perf_counter() - t0
print(t, hashlib.sha256(np.array([(o.iterations, o.loss[-1]) for o in out]).tobytes()).hexdigest()[:16])
"""


def timed(code: str, path: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=path, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{path}: {done.stderr[-2000:]}")
    seconds, digest = done.stdout.split()
    return float(seconds), digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--old", default="83d4c67", help="the commit before schedules and mini-batches")
    parser.add_argument("--base", help="compare today's code with this commit's (same script) instead")
    parser.add_argument("--mlp", action="store_true", help="with --base: a mini-batch MLP sweep (see above)")
    args = parser.parse_args()
    old_code = OLD
    if args.base:
        args.old, old_code = args.base, MLP if args.mlp else NEW
    new_code = MLP if args.base and args.mlp else NEW
    with tempfile.TemporaryDirectory(prefix="gdexp-old-") as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.old, "gdexp"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        old_t, new_t, digests = [], [], set()
        for _ in range(args.repeat):
            for code, path, times in ((old_code, Path(tmp), old_t), (new_code, REPO, new_t)):
                seconds, digest = timed(code.format(runs=args.runs, steps=args.steps), path)
                times.append(seconds)
                digests.add((path == REPO, digest))
    old_m, new_m = statistics.median(old_t), statistics.median(new_t)
    same = len({d for _, d in digests}) == 1
    print(f"descent, {args.runs} runs x {args.steps} steps, medians of {args.repeat} (fresh process each):")
    print(f"  {'base' if args.base else 'gdexp 0.1'} ({args.old})   {old_m:7.3f} s   (all: {', '.join(f'{t:.2f}' for t in old_t)})")
    print(f"  today, constant lr   {new_m:7.3f} s   (all: {', '.join(f'{t:.2f}' for t in new_t)})")
    print(f"  today / {'base' if args.base else '0.1 '}         {new_m / old_m:7.2f}x   final losses bit-identical: {same}")


if __name__ == "__main__":
    main()
