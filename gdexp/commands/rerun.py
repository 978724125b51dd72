"""`gdexp rerun`: re-execute logged runs from their own config.yaml and compare curves bit for bit.

Nothing is written to MLflow: a rerun is a check, not a new run.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
from gdexp.commands.exits import Parser

_DESCRIPTION = """\
Re-execute runs from the config.yaml each one logged (never from today's
defaults), compare the new curve with the logged curve.parquet step by step,
bit for bit (NaN equals NaN), and print `identical` or the first step that
differs and by how much. A run made from a data file (or a bundled data set)
is compared only if its SHA-256 still matches the one the run logged, and a
run of your own loss only if the source file of its _target_ still matches.
No MLflow run is created. Exit status 0 only if every run is identical.
A run pruned by successive halving (stopping.prune=halving, tag
gdexp.pruned_step) is re-executed alone up to its prune step: its curve so
far depends on nothing else, the decision to stop it did.

Trust: a config.yaml names code (`_target_`), and importing a module runs it.
A stored config naming code outside gdexp is re-executed only if you name its
module with --allow-module (a store someone else wrote is input, not code you
chose to run). The module is imported from the current folder, as the run
imported it from the folder gdexp was started in."""

_EPILOG = """\
examples:
  gdexp rerun 0f3c9a2b51e44d0f8c1d2e3f4a5b6c7d
  gdexp rerun --sweep 7ab3ae1e83b346d38b263dd5b4ffdfd3
  gdexp rerun --experiment gdexp --tracking-uri sqlite:///runs/mlflow.db
  gdexp rerun --sweep 7ab3ae1e... --allow-module mypkg   runs of your own loss mypkg.losses.saddle"""


def main(argv: list[str]) -> int:
    """Parse `gdexp rerun` arguments, check every selected run; returns the exit status."""
    args = _parser().parse_args(argv)
    if bool(args.run_ids) + bool(args.sweep) + bool(args.experiment) != 1:
        print("gdexp rerun: error: give RUN_ID..., or --sweep PARENT_RUN_ID, or --experiment NAME",
              file=sys.stderr)
        return 2
    from gdexp.commands.exits import say_invalid
    from gdexp.core.errors import ConfigError
    from gdexp.tracking.reader import StoreReader, check_allow_list, load_runs
    from gdexp.tracking.store import resolve_uri, store_error

    try:
        check_allow_list(args.allow_module)
        store = StoreReader(resolve_uri(args.tracking_uri))  # never creates the store it reads
        if args.run_ids:
            runs = [_logged_run(store, run_id) for run_id in args.run_ids]
        else:
            # Checked here to name them as typed (--sweep, --experiment); load_runs says sweep, experiment.
            if args.sweep:
                store.run(args.sweep, "--sweep")
            else:
                store.check_experiment(args.experiment, "--experiment")
            table = load_runs(experiment=args.experiment, sweep=args.sweep, tracking_uri=args.tracking_uri)
            runs = table.to_dict("records")
    except ConfigError as exc:
        return say_invalid(exc)
    except (LookupError, store_error()) as exc:  # what MLflow refuses beyond gdexp's checks, in one line
        print(f"gdexp rerun: error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 2
    if not runs:
        print("gdexp rerun: error: no runs selected", file=sys.stderr)
        return 2
    results = [check(run, args.tracking_uri, args.allow_module) for run in runs]
    for ok, line in results:
        print(line)
    bad = sum(not ok for ok, _ in results)
    if len(results) > 1:
        print(f"{len(results) - bad} of {len(results)} runs identical" + (f", {bad} not" if bad else ""))
    return 1 if bad else 0


def check(run: dict, tracking_uri: str | None = None, allow_modules=()) -> tuple[bool, str]:
    """Re-execute one run and compare; (identical, the line to print).

    Args:
        run: a load_runs row as a dict (run_id, run_name, data_sha256, source_sha256, artifact_uri, ...).
        allow_modules: modules whose code a stored `_target_` may name (--allow-module).
    """
    import pandas as pd

    from gdexp.core.pruning import Replay
    from gdexp.specs.batch import descend_batch, execute
    from gdexp.core.errors import ConfigError
    from gdexp.specs.legacy import upgrade
    from gdexp.specs.run_spec import build_spec
    from gdexp.tracking.reader import artifact_file, stored_config

    who = f"{run['run_name']} ({run['run_id']})"
    try:
        config = stored_config(run["run_id"], tracking_uri, run["artifact_uri"], allow_modules)
        with artifact_file(run["run_id"], "curve.parquet", tracking_uri, run["artifact_uri"]) as path:
            logged = pd.read_parquet(path)
    except ConfigError as exc:
        return False, f"{who}: not re-executed: {exc}"
    except (FileNotFoundError, OSError) as exc:
        return False, f"{who}: cannot compare, {exc} (run status {run.get('mlflow_status', '?')})"
    try:
        config = upgrade(config)
        changed = _data_changed(config, run.get("data_sha256")) or _source_changed(config, run.get("source_sha256"))
        if changed:
            return False, f"{who}: {changed}; not re-executed"
        spec = build_spec(config)
    except ConfigError as exc:
        return False, f"{who}: cannot re-execute its logged config: {exc}"
    except (LookupError, TypeError, ValueError, AttributeError) as exc:  # a config.yaml edited by hand
        return False, f"{who}: cannot re-execute its logged config: {type(exc).__name__}: {exc}"
    changed = _bundled_changed(config, spec, run.get("data_sha256"))
    if changed:
        return False, f"{who}: {changed}; not re-executed"
    pruned_step = run.get("pruned_step")
    if pruned_step is None or pd.isna(pruned_step):
        traj = execute([spec])[0]
    else:  # its group decided where it stopped: replay that decision
        traj = descend_batch([spec], prune=Replay(int(pruned_step)))[0]
    fresh = {"loss": traj.loss, "grad_norm": traj.grad_norm}
    if traj.path is not None:
        fresh.update({name: traj.path[:, j] for j, name in enumerate(spec.loss.param_names)})
        # curve.parquet of gdexp 0.1 named the coordinates x0, x1, ...
        fresh.update({f"x{j}": traj.path[:, j] for j in range(traj.path.shape[1])})
    return compare(who, logged, fresh)


def compare(who: str, logged, fresh: dict[str, np.ndarray]) -> tuple[bool, str]:
    """The first step where any logged column differs from the fresh one, bit for bit.

    >>> import pandas as pd
    >>> compare("r", pd.DataFrame({"loss": [1.0, np.nan]}), {"loss": np.array([1.0, np.nan])})
    (True, 'r: identical (2 steps)')
    >>> compare("r", pd.DataFrame({"loss": [1.0, 2.0]}), {"loss": np.array([1.0, 2.5])})[1]
    'r: differs at step 1: loss 2.0 logged vs 2.5 rerun (rel 2.0e-01)'
    """
    steps = min(len(logged), *(len(v) for v in fresh.values()))
    first = None  # (step, column)
    for name in (c for c in logged.columns if c in fresh):
        a = logged[name].to_numpy(np.float64)[:steps]
        b = np.asarray(fresh[name], dtype=np.float64)[:steps]
        same = (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))
        bad = np.flatnonzero(~same)
        if bad.size and (first is None or bad[0] < first[0]):
            first = (int(bad[0]), name)
    n_fresh = len(next(iter(fresh.values())))
    if first is not None:
        step, name = first
        a, b = float(logged[name].iloc[step]), float(fresh[name][step])
        with np.errstate(all="ignore"):
            rel = abs(b - a) / max(abs(a), abs(b)) if max(abs(a), abs(b)) > 0 else float("nan")
        return False, f"{who}: differs at step {step}: {name} {a!r} logged vs {b!r} rerun (rel {rel:.1e})"
    if len(logged) != n_fresh:
        return False, (f"{who}: differs at step {steps}: the logged curve has {len(logged)} steps, "
                       f"the rerun {n_fresh}")
    return True, f"{who}: identical ({n_fresh} steps)"


def _data_changed(config: dict, logged_sha) -> str | None:
    """Why the run's data file no longer matches its logged checksum, or None."""
    if not isinstance(logged_sha, str):
        return None  # synthetic data: the config's seed fixes it
    data = _loss_section(config).get("data")
    if data is None:
        return None  # a bundled data set: checked on the loss once built (_bundled_changed)
    # Hashed here, not taken from the planned loss: build_spec() caches losses by their
    # config, so in a long-lived process it could hand back the data it read first.
    try:
        now = hashlib.sha256(Path(data).read_bytes()).hexdigest()
    except (OSError, TypeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        return f"cannot read its data file {data} ({why}; a relative path is read from the current folder)"
    if now != logged_sha:
        return f"data file {data} changed since the run: sha256 now {now}, logged {logged_sha}"
    return None


def _bundled_changed(config: dict, spec, logged_sha) -> str | None:
    """Why a bundled data set (loss.dataset) no longer matches its logged checksum, or None."""
    if not isinstance(logged_sha, str) or _loss_section(config).get("data") is not None:
        return None
    now = spec.loss.data_sha256()
    if now != logged_sha:
        name = _loss_section(config).get("dataset")
        return (f"data set {name} changed since the run (another scikit-learn release?): "
                f"sha256 now {now}, logged {logged_sha}")
    return None


def _source_changed(config: dict, logged_sha) -> str | None:
    """Why the source file of the run's own loss no longer matches its logged checksum, or None.

    The target is imported (it is allowed: stored_config checked it) and its
    defining file hashed now, as the run hashed it (gdexp.specs.targets.source_sha256).
    """
    if not isinstance(logged_sha, str):
        return None  # a loss of gdexp's own, or a run recorded before gdexp 0.2 logged the tag
    import inspect
    import os

    from gdexp.specs.targets import resolve, source_sha256

    from gdexp.tracking.reader import user_code

    section = _loss_section(config)
    key, target = next(iter(user_code(config).items()), ("loss._target_", section.get("_target_")))
    obj = resolve(target, key, os.getcwd())
    now = source_sha256(obj)
    if now != logged_sha:
        file = inspect.getsourcefile(inspect.unwrap(obj)) if now else "its source"
        return (f"the source of {key}={target} ({file}) changed since the run: "
                f"sha256 now {now}, logged {logged_sha}")
    return None


def _loss_section(config: dict) -> dict:
    loss = config.get("loss")
    if not isinstance(loss, dict):
        raise ValueError(f"its loss section is {type(loss).__name__}, not a mapping")
    return loss


def _logged_run(store, run_id: str) -> dict:
    from gdexp.tracking import TAG

    run = store.run(run_id, "RUN_ID")
    return {"run_id": run_id, "run_name": run.info.run_name, "artifact_uri": run.info.artifact_uri,
            "data_sha256": run.data.tags.get(f"{TAG}data_sha256"),
            "source_sha256": run.data.tags.get(f"{TAG}source_sha256"),
            "pruned_step": run.data.tags.get(f"{TAG}pruned_step"),
            "mlflow_status": run.info.status}


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="gdexp rerun", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to re-execute")
    p.add_argument("--sweep", metavar="PARENT_RUN_ID", help="every run of this sweep")
    p.add_argument("--experiment", metavar="NAME", help="every run of this experiment")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow store (default: sqlite:///./mlflow.db); MLFLOW_TRACKING_URI, when "
                        "set, wins, as for every gdexp command")
    p.add_argument("--allow-module", metavar="MOD", action="append", default=[],
                   help="trust code in module MOD (and its submodules) named by a stored config's "
                        "_target_, e.g. your own loss mypkg.losses.saddle: --allow-module mypkg; "
                        "repeat it for several. Without it, a run naming code outside gdexp is not "
                        "re-executed (its module is never imported)")
    return p
