"""gdexp.run and gdexp.sweep: the `gdexp` command from Python (a notebook, a script).

``run`` is what Hydra's example app calls ``add()``: compose the config, build
the run's spec, descend and record it, return its row; no command line is
run inside the process. ``sweep`` runs the sweep through Hydra's sweeper and
launcher, as ``gdexp -m`` does, and reads its runs back from the store. The
runs both record are the ones ``gdexp ...`` records: same params, metrics,
tags, artifacts, run names, parent run and summary (tests/commands/test_api.py
compares the stores). Bad input raises ConfigError (one line, no run made).

They print nothing unless asked (``verbose=True`` prints what the command line
prints): every line the command would print goes to the ``gdexp`` logger
(Python's logging; stdout's lines at INFO, stderr's at WARNING), as Optuna and
MLflow report through theirs. ``logging.basicConfig(level=logging.INFO)`` shows them.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from gdexp.commands.exits import console
from gdexp.core.errors import ConfigError

log = logging.getLogger("gdexp")

# Hydra's logging set-up is left out of a sweep from Python: it would point the notebook's root
# logger at Hydra's handlers (and so print what the gdexp logger says). The store is the same.
_QUIET = ("hydra/job_logging=none", "hydra/hydra_logging=none")

def run(overrides: list[str] | tuple[str, ...] = (), *, verbose: bool = False) -> dict:
    """One run, as `gdexp OVERRIDES...` would make it; returns its summary row.

    Args:
        overrides: Hydra overrides, e.g. ``["loss=quadratic", "optimizer.lr=0.01"]``.
        verbose: print what the command prints (the run's line, where to look).

    Returns:
        The run's row (gdexp.tracking.content.run_row): run_id, run_name, status,
        final_loss, best_loss, iterations, diverged_step, lr, ... and every param
        under its dotted key, typed as gdexp.load_runs types its columns
        (``optimizer.lr`` a float, ``stopping.maxiter`` an int, a missing value None).

    Raises:
        ConfigError: bad input (one line ``KEY=VALUE: reason``; nothing recorded),
            also a sweep's overrides (``-m``, a comma list): use gdexp.sweep.
        gdexp.tracking.errors.Unrecorded: the store did not take the run (kept on disk:
            ``gdexp resume FOLDER``); a RuntimeError.
        Exception: the error the run failed with, after the run was closed FAILED.

    >>> row = run(["loss=booth", "optimizer.lr=0.05"])  # doctest: +SKIP
    >>> row["status"], round(row["final_loss"], 12)      # doctest: +SKIP
    ('converged', 0.0)
    """
    from gdexp.core.outcomes import UNRECORDED
    from gdexp.hydra.jobs import run_line, single_store
    from gdexp.hydra.schema import job_spec
    from gdexp.specs.batch import execute
    from gdexp.tracking.errors import Unrecorded
    from gdexp.tracking.provenance import set_command
    from gdexp.tracking.record import write_run
    from gdexp.tracking.store import where_to_look

    with console(verbose):
        set_command(list(overrides))
        spec = job_spec(compose_run(list(overrides)))
        store = single_store(spec)
        row = write_run(store, spec, lambda: execute([spec])[0], parent_id=None, keep_dir=Path.cwd(),
                        swallow=False)
        if row["status"] == UNRECORDED:
            raise Unrecorded(1, row["uri"], row["error"], Path(row["kept"]).parent.parent)
        log.info(run_line(row))
        log.info(where_to_look(store.uri, store.experiment_id, row["run_id"], single=True))
    return typed_row(row)


def typed_row(row: dict) -> dict:
    """A run's row with the types load_runs gives its columns (gdexp.results.table.typed_table),
    as Python values (a missing value None).

    >>> typed_row({"run_id": "a", "lr": 0.1, "optimizer.lr": "0.1", "stopping.maxiter": "60", "init": "null",
    ...            "loss.eigenvalues": "[1,100]"})["stopping.maxiter"]
    60
    """
    from gdexp.results.table import typed_table

    typed = typed_table([row]).iloc[0].to_dict()
    out = dict(row)
    for key, value in typed.items():
        if key in row:
            out[key] = None if _missing(value) else value.item() if hasattr(value, "dtype") else value
    return out


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list-like value
        return False


def compose_run(overrides: list[str]) -> dict:
    """The resolved config of one run (plain containers), composed as the command composes it.

    Raises:
        ConfigError: what the command refuses (a bad key, option or value, a sweep).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from gdexp.commands.main import input_errors
    from gdexp.hydra.argv import is_multirun, prepare
    from gdexp.hydra.named_sweeps import register_sweeps
    from gdexp.hydra.paths import conf_dir
    from gdexp.hydra.schema import register_configs
    from gdexp.hydra.task import to_config

    flag = next((o for o in overrides if o.startswith("-") and "=" not in o and o not in ("-m", "--multirun")), None)
    if flag is not None:
        raise ConfigError("overrides", " ".join(overrides), f"{flag}: a flag of the command, not an override; "
                          "run `gdexp` for what it does")
    if is_multirun(overrides):
        raise ConfigError("overrides", " ".join(overrides), "a sweep, not one run: use gdexp.sweep")
    hydra_argv = [a for a in prepare(overrides) if not a.startswith("hydra.run.dir=")]
    register_configs()
    register_sweeps()
    saved = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()
    try:
        with input_errors(overrides), initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            return to_config(compose("config", overrides=hydra_argv))
    finally:
        GlobalHydra.instance().clear()
        if saved is not None:
            GlobalHydra.instance().initialize(saved)


def sweep(overrides: list[str] | tuple[str, ...] = (), *, verbose: bool = False) -> pd.DataFrame:
    """A sweep, as `gdexp -m OVERRIDES...` would run it; returns its runs as gdexp.load_runs does.

    A named sweep works too: ``sweep(["+sweep=lr_grid", "stopping.maxiter=500"])``.

    Args:
        overrides: Hydra overrides; comma lists and grids (``optimizer.lr='logspace(1e-4,1,13)'``)
            make the sweep's jobs, as on the command line. A ``hydra.sweep.dir`` given here must
            be a plain path (the runs are found through the plan the sweep writes there).
        verbose: print what the command prints (the summary, where to look).

    Returns:
        One typed row per run of the sweep (gdexp.tracking.reader.load_runs' columns),
        read back from the store the sweep wrote to.

    Raises:
        ConfigError: bad input (one line ``KEY=VALUE: reason``; nothing recorded).
        gdexp.tracking.errors.RunsFailed, Unrecorded, SearchFailed (RuntimeErrors): runs
            failed, were kept on disk, or a search found no answer; the message says which.
        gdexp.tracking.errors.SweepInterrupted: Ctrl-C (a KeyboardInterrupt), the sweep closed KILLED.

    >>> table = sweep(["loss=booth", "optimizer.lr=0.01,0.1"])  # doctest: +SKIP
    >>> table[["run_name", "status"]].values.tolist()             # doctest: +SKIP
    [['booth-gd-lr=0.1', 'converged'], ['booth-gd-lr=0.01', 'max_iters']]
    """
    import secrets

    from gdexp.commands.main import hydra_app
    from gdexp.hydra.task import task
    from gdexp.tracking.plan import read_plan
    from gdexp.tracking.reader import load_runs

    typed = ["-m", *overrides]
    folder = _given(typed, "hydra.sweep.dir")
    argv = list(typed)
    if folder is None:  # the sweep's folder named here, as the command names it: its plan is read from there
        folder = f"multirun/{time.strftime('%Y-%m-%d')}/{time.strftime('%H-%M-%S')}-{secrets.token_hex(3)}"
        argv.append(f"hydra.sweep.dir={folder}")
    with console(verbose), _root_logging_kept():
        hydra_app([*argv, *_QUIET], task, typed)
    sweep_plan = read_plan(Path(folder))
    if sweep_plan is None:
        raise RuntimeError(f"gdexp.sweep({list(overrides)!r}) ran no sweep (no plan in {folder})")
    return load_runs(sweep=sweep_plan.parent_id, tracking_uri=sweep_plan.uri)


def _given(overrides: list[str], key: str) -> str | None:
    """The value of `key` among the overrides, if given."""
    values = [o.partition("=")[2] for o in overrides if o.partition("=")[0].lstrip("+~") == key]
    return values[-1] if values else None


@contextmanager
def _root_logging_kept():
    """Hydra points the root logger at its own handlers for a sweep's jobs; a notebook's set-up is
    put back after the call."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
