"""The store before and after issue 10's restructure: one reference sweep, run by both codes, compared run by run.

    python benchmarks/compare_stores.py                 # old commit 83d4c67 against this tree
    python benchmarks/compare_stores.py --old-names     # this tree typed as 0.1 users type (budget.max_iters)
    python benchmarks/compare_stores.py --since 7ab735d # a 0.2 commit against this tree: no renames at all

`--since` is the check of a restructure that must change nothing a user sees
(issue 24's layers and exits: the store before and after must be equal): both
trees run today's command line, and only the tags that name the code and the
process that ran (gdexp.git_commit, gdexp.git_dirty, mlflow.source.git.commit,
which the extracted old tree lacks, and gdexp.pid) may differ.

The code of the old commit is extracted with `git archive` into a temporary
folder (a checkout of it, without touching the repository's worktrees) and
run with PYTHONPATH pointing at it; this tree runs the same sweep into a
second SQLite store. Both stores are read whole through MlflowClient
(tests/store_snapshot.py): params, metrics and their histories, tags,
artifacts (config.yaml, result.json, curve.parquet, summary.csv), run names,
parents. The old store is then put into today's vocabulary by RENAMES, each
rule checking the values it touches, and what still differs is printed: it
must be nothing (exit status 0; 1 otherwise).

RENAMES (what changed on purpose between 0.1 and 0.2):
  params     budget.max_iters/tol/patience/min_delta/divergence_factor ->
             stopping.maxiter/gtol/patience/min_delta/divergence_factor;
             added: loss._target_ and optimizer._target_ (the registry's implementation
             of loss.name/optimizer.name), schedule._target_ = gdexp.core.schedules.constant and
             schedule.name = constant, tracking.eval_every = 100, tracking.sharpness_every = 0
  metrics    added: every numeric param also as a metric (its value, step 0), and `lr`
             (optimizer.lr) under a constant schedule; non-finite curve points no longer logged
  tags       gdexp.version 0.1.0 -> 0.2.0; gdexp.config_hash recomputed over the new config
             (checked: it groups runs exactly as the old hash did); on the parent,
             gdexp.command typed with the new names, and git_commit/git_dirty of the code
             that ran (the extracted old tree is no git checkout)
  result.json  final_params -> x; added param_names; config_hash as the tag
  curve.parquet  columns x0, x1, ... -> the loss's param_names (x[0], x[1], ...)
  config.yaml  budget -> stopping (renamed keys); _target_ first in loss and optimizer;
             schedule section added; tracking.eval_every/sharpness_every added
  summary.csv  the old columns unchanged; the table now has load_runs' columns (more)
The curve defaults differ too (tracking.curve_points 1000 -> 320): both runs are given
tracking.curve_points explicitly, so their curves compare point for point.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import math
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # tests/store_snapshot.py: a store as plain data

from store_snapshot import differences, snapshot  # noqa: E402

OLD_COMMIT = "83d4c67"  # main before issue 10 (README: descent figure after block checking)
SWEEP = ["-m", "loss=quadratic,rosenbrock", "optimizer=gd,adam", "optimizer.lr=logspace(1e-4,1e-1,4)"]
OLD_ARGS = [*SWEEP, "budget.max_iters=500", "tracking.curve_points=320"]
NEW_ARGS = [*SWEEP, "stopping.maxiter=500", "tracking.curve_points=320"]
OLD_MAIN = "import sys; from gdexp.cli import main; main(sys.argv[1:])"
NEW_MAIN = "import sys; from gdexp.commands.main import main; main(sys.argv[1:])"

BUDGET = {"max_iters": "maxiter", "tol": "gtol", "patience": "patience", "min_delta": "min_delta",
          "divergence_factor": "divergence_factor"}
NEW_DEFAULTS = {"schedule._target_": "gdexp.core.schedules.constant", "schedule.name": "constant",
                "tracking.eval_every": "100", "tracking.sharpness_every": "0"}
VERSIONS = ("0.1.0", "0.2.0")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", default=OLD_COMMIT, help="the commit before the restructure (default %(default)s)")
    p.add_argument("--old-names", action="store_true",
                   help="run this tree with the old command line (budget.max_iters: the deprecation path)")
    p.add_argument("--keep", metavar="DIR", help="keep both stores and the old code in DIR")
    p.add_argument("--since", metavar="COMMIT", help="a 0.2 commit: run both trees with today's command line, "
                                                     "compare without renames")
    args = p.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="gdexp-compare-"))
    code = work / "old-code"
    if args.since:
        return same_store(args.since, work, code, args.keep)
    extract(args.old, code)
    new_args = OLD_ARGS if args.old_names else NEW_ARGS
    old_uri, old_s = run_sweep(work / "old", code, OLD_MAIN, OLD_ARGS)
    new_uri, new_s = run_sweep(work / "new", ROOT, NEW_MAIN, new_args)
    print(f"old ({args.old}): {shlex.join(['gdexp', *OLD_ARGS])}  [{old_s:.1f} s]")
    print(f"new (this tree): {shlex.join(['gdexp', *new_args])}  [{new_s:.1f} s]")
    old, new = snapshot(old_uri), snapshot(new_uri)
    print(f"runs: {len(old)} old, {len(new)} new; names equal: {sorted(old) == sorted(new)}")
    applied: collections.Counter = collections.Counter()
    problems = to_new_vocabulary(old, new, applied, typed_new=new_args)
    left = problems + differences(old, new)
    print("renames applied (RENAMES in the docstring):")
    for rule, count in sorted(applied.items()):
        print(f"  {count:6d}  {rule}")
    print(f"differences beyond the renames: {len(left)}")
    for line in left[:200]:
        print(f"  {line}")
    print(f"stores kept in {work}" if args.keep else "")
    return 1 if left else 0


# Tags that name the code and the process that ran: the only difference two trees may make in a store.
CODE_TAGS = ("gdexp.git_commit", "gdexp.git_dirty", "mlflow.source.git.commit", "gdexp.pid",
             "gdexp.process_started")


def same_store(commit: str, work: Path, code: Path, keep: str | None) -> int:
    """The reference sweep by `commit` and by this tree, both with today's command line; 0 if the
    stores are equal but for CODE_TAGS."""
    extract(commit, code)
    old_uri, old_s = run_sweep(work / "old", code, NEW_MAIN, NEW_ARGS)
    new_uri, new_s = run_sweep(work / "new", ROOT, NEW_MAIN, NEW_ARGS)
    print(f"old ({commit}): {shlex.join(['gdexp', *NEW_ARGS])}  [{old_s:.1f} s]")
    print(f"new (this tree): same command  [{new_s:.1f} s]")
    old, new = snapshot(old_uri), snapshot(new_uri)
    for store in (old, new):
        for run in store.values():
            for tag in CODE_TAGS:
                run["tags"].pop(tag, None)
    left = differences(old, new)
    print(f"runs: {len(old)} old, {len(new)} new; differences: {len(left)}")
    for line in left[:200]:
        print(f"  {line}")
    print(f"stores kept in {work}" if keep else "")
    return 1 if left else 0


def extract(commit: str, folder: Path) -> None:
    """The tree of `commit` in `folder` (git archive: a checkout without a worktree entry)."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(folder, filter="data")


def run_sweep(folder: Path, code: Path, entry: str, argv: list[str]) -> tuple[str, float]:
    """Run `gdexp ARGV` from `code` in `folder` into folder/mlflow.db; (its URI, seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(code), "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("GDEXP_PARENT_RUN_ID", None)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", entry, *argv], cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the sweep failed in {folder} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return uri, time.perf_counter() - t0


def to_new_vocabulary(old: dict, new: dict, applied: collections.Counter, typed_new: list[str]) -> list[str]:
    """Rewrite the old snapshot in place by RENAMES (and trim what the new one only adds to
    summary.csv); returns the problems found while checking the values the rules touch."""
    problems: list[str] = []
    check_hashes(old, new, problems)
    for name, run in old.items():
        other = new.get(name)
        if other is None:
            continue
        if run["parent"] is None:
            parent_rules(run, other, applied, problems, typed_new)
        else:
            child_rules(name, run, other, applied, problems)
    return problems


def child_rules(name: str, run: dict, other: dict, applied, problems: list[str]) -> None:
    params = run["params"]
    for old_key, new_key in BUDGET.items():
        if f"budget.{old_key}" in params:
            params[f"stopping.{new_key}"] = params.pop(f"budget.{old_key}")
            applied["params budget.* -> stopping.*"] += 1
    for section in ("loss", "optimizer"):
        target = other["params"].get(f"{section}._target_")
        if not implements(section, params.get(f"{section}.name"), target):
            problems.append(f"/{name}/params/{section}._target_: {target!r} is not {section} "
                            f"{params.get(f'{section}.name')!r} of the registry")
        params[f"{section}._target_"] = target
        applied["params added: loss._target_, optimizer._target_"] += 1
    for key, value in NEW_DEFAULTS.items():
        if other["params"].get(key) != value:
            problems.append(f"/{name}/params/{key}: {other['params'].get(key)!r}, expected {value!r}")
        params[key] = value
        applied["params added: schedule.*, tracking.eval_every/sharpness_every"] += 1
    # metrics: non-finite curve points are no longer logged; numeric params (and lr) are
    for key, points in run["histories"].items():
        finite = [(s, v) for s, v in points if math.isfinite(v)]
        applied["histories: non-finite points dropped"] += len(points) - len(finite)
        run["histories"][key] = finite
    for key, value in other["metrics"].items():
        if key in run["metrics"]:
            continue
        source = "optimizer.lr" if key == "lr" else key
        logged = other["params"].get(source)
        if logged is None or float(logged) != value or other["histories"].get(key) != [(0, value)]:
            problems.append(f"/{name}/metrics/{key}: {value!r} is not the param {source}={logged!r} at step 0")
        run["metrics"][key], run["histories"][key] = value, [(0, value)]
        applied["metrics added: numeric params, lr"] += 1
    tag_rules(run, other, applied)
    artifact_rules(name, run, other, applied, problems)


def implements(section: str, name: str | None, target: str | None) -> bool:
    """Whether `target` names the registry's implementation of `name` (this tree's registry)."""
    from gdexp.core.losses import LOSSES
    from gdexp.core.optimizers import OPTIMIZERS
    from gdexp.specs.targets import resolve

    registry = LOSSES if section == "loss" else OPTIMIZERS
    return name in registry and target is not None and resolve(target, f"{section}._target_", None) is registry[name]


def tag_rules(run: dict, other: dict, applied) -> None:
    tags = run["tags"]
    if tags.get("gdexp.version") == VERSIONS[0] and other["tags"].get("gdexp.version") == VERSIONS[1]:
        tags["gdexp.version"] = VERSIONS[1]
        applied["tags gdexp.version 0.1.0 -> 0.2.0"] += 1
    if "gdexp.config_hash" in tags:  # checked by check_hashes
        tags["gdexp.config_hash"] = other["tags"].get("gdexp.config_hash")
        applied["tags gdexp.config_hash recomputed"] += 1


def artifact_rules(name: str, run: dict, other: dict, applied, problems: list[str]) -> None:
    files, theirs = run["artifacts"], other["artifacts"]
    result = files.get("result.json")
    if result is not None and "final_params" in result:
        names = theirs.get("result.json", {}).get("param_names")
        rebuilt = {}
        for key, value in result.items():
            if key == "x0":
                rebuilt["param_names"] = names
            rebuilt["x" if key == "final_params" else key] = value
        rebuilt["config_hash"] = run["tags"].get("gdexp.config_hash")
        files["result.json"] = rebuilt
        applied["result.json final_params -> x, param_names added"] += 1
        curve = files.get("curve.parquet")
        if curve is not None and names:
            plain = [f"x{i}" for i in range(len(names))]
            if [c for c in curve if c not in ("step", "loss", "grad_norm")] != plain:
                problems.append(f"/{name}/artifacts/curve.parquet: columns {list(curve)}, expected x0..x{len(names) - 1}")
            files["curve.parquet"] = {dict(zip(plain, names)).get(k, k): v for k, v in curve.items()}
            applied["curve.parquet x0.. -> param_names"] += 1
    if "config.yaml" in files:
        want = yaml.safe_load(theirs.get("config.yaml", "{}"))
        mine = upgraded_config(yaml.safe_load(files["config.yaml"]), want)
        if json.dumps(mine) == json.dumps(want):  # key order included
            files["config.yaml"] = theirs["config.yaml"]
            applied["config.yaml budget -> stopping, sections added"] += 1
        else:
            found = differences(mine, want) or ["key order differs"]
            problems += [f"/{name}/artifacts/config.yaml{line}" for line in found]


def upgraded_config(config: dict, new: dict) -> dict:
    """An old config.yaml in the new form: targets and sections added as the new one has them."""
    out = {}
    for key, value in config.items():
        if key == "budget":
            out["schedule"] = new.get("schedule")
            out["stopping"] = {BUDGET[k]: v for k, v in value.items()}
        elif key in ("loss", "optimizer"):
            out[key] = {"_target_": new.get(key, {}).get("_target_"), **value}
        elif key == "tracking":
            out[key] = {**value, **{k: new[key][k] for k in ("eval_every", "sharpness_every") if k in new[key]}}
        else:
            out[key] = value
    return out


def parent_rules(run: dict, other: dict, applied, problems: list[str], typed_new: list[str]) -> None:
    tags = run["tags"]
    typed = tags.get("gdexp.command", "")
    if typed_new != OLD_ARGS:  # this tree was given today's names
        for old_key, new_key in BUDGET.items():
            typed = typed.replace(f"budget.{old_key}=", f"stopping.{new_key}=")
    if typed != tags.get("gdexp.command"):
        applied["parent: gdexp.command typed with the new names"] += 1
    tags["gdexp.command"] = typed
    for key in ("gdexp.git_commit", "gdexp.git_dirty"):
        if key in tags:
            tags[key] = other["tags"].get(key)
            applied["parent: git state of the code that ran"] += 1
    table, theirs = run["artifacts"].get("summary.csv"), other["artifacts"].get("summary.csv")
    if table is not None and theirs is not None:
        columns = list(table[0]) if table else []
        other["artifacts"]["summary.csv"] = [{k: row.get(k) for k in columns} for row in theirs]
        applied["summary.csv: columns load_runs adds"] += len(set(theirs[0]) - set(columns)) if theirs else 0


def check_hashes(old: dict, new: dict, problems: list[str]) -> None:
    """gdexp.config_hash may change (the hashed config has new keys) but must group runs as before."""
    def groups(snap):
        by = collections.defaultdict(set)
        for name, run in snap.items():
            if "gdexp.config_hash" in run["tags"]:
                by[run["tags"]["gdexp.config_hash"]].add(name)
        return sorted(map(sorted, by.values()))

    if groups(old) != groups(new):
        problems.append("gdexp.config_hash groups runs differently before and after")


if __name__ == "__main__":
    sys.exit(main())
