"""gdexp.run and gdexp.sweep: the `gdexp` command from Python (a notebook, a script).

Both go through the same code as the command line, so the runs they record
are the ones `gdexp ...` records: same params, metrics, tags, artifacts,
run names, parent run and summary (tests/test_api.py compares the stores).
Bad input raises ConfigError (one line, no run made) instead of exiting.
"""
from __future__ import annotations

from contextlib import contextmanager

import pandas as pd

from gdexp.core.errors import ConfigError, InvalidInputExit

# Hydra's logging set-up is left out of a run from Python: it would take over the
# notebook's root logger and write a .hydra/ folder per call. The store is the same.
_QUIET = ("hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none")


def run(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """One run, as `gdexp OVERRIDES...` would make it; returns its summary row.

    Args:
        overrides: Hydra overrides, e.g. ``["loss=quadratic", "optimizer.lr=0.01"]``.

    Returns:
        The run's row (gdexp.tracking.content.run_row): run_id, run_name, status,
        final_loss, best_loss, iterations, diverged_step, lr, ... and every param
        under its dotted key (MLflow's strings).

    Raises:
        ConfigError: bad input (one line ``KEY=VALUE: reason``; nothing recorded).
        RuntimeError: the run failed, or the store did not take it (it is kept on
            disk: ``gdexp resume``), or the overrides made no run (``-m``: use sweep).

    >>> row = run(["loss=booth", "optimizer.lr=0.05"])  # doctest: +SKIP
    >>> row["status"], round(row["final_loss"], 12)      # doctest: +SKIP
    ('converged', 0.0)
    """
    from gdexp.commands.main import run_hydra
    from gdexp.hydra.task import last_row

    last_row()  # a row left by an earlier call is not this run's
    with _as_api():
        run_hydra([*overrides, *_QUIET])
    row = last_row()
    if row is None:
        raise RuntimeError(f"gdexp.run({list(overrides)!r}) made no run (for a sweep, use gdexp.sweep)")
    return row


def sweep(overrides: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """A sweep, as `gdexp -m OVERRIDES...` would run it; returns its runs as gdexp.load_runs does.

    A named sweep works too: ``sweep(["+sweep=lr_grid", "stopping.maxiter=500"])``.

    Args:
        overrides: Hydra overrides; comma lists and grids (``optimizer.lr='logspace(1e-4,1,13)'``)
            make the sweep's jobs, as on the command line.

    Returns:
        One typed row per run of the sweep (gdexp.tracking.reader.load_runs' columns),
        read back from the store the sweep wrote to.

    Raises:
        ConfigError: bad input (one line ``KEY=VALUE: reason``; nothing recorded).
        RuntimeError: runs failed or were kept on disk; the message says which.

    >>> table = sweep(["loss=booth", "optimizer.lr=0.01,0.1"])  # doctest: +SKIP
    >>> table[["run_name", "status"]].values.tolist()             # doctest: +SKIP
    [['booth-gd-lr=0.1', 'converged'], ['booth-gd-lr=0.01', 'max_iters']]
    """
    from gdexp.commands.main import run_hydra
    from gdexp.tracking.parent_run import last_sweep
    from gdexp.tracking.reader import load_runs

    last_sweep()  # a sweep left by an earlier call is not this one
    with _as_api():
        run_hydra(["-m", *overrides])
    opened = last_sweep()
    if opened is None:
        raise RuntimeError(f"gdexp.sweep({list(overrides)!r}) ran no sweep")
    parent_id, uri = opened
    return load_runs(sweep=parent_id, tracking_uri=uri)


@contextmanager
def _as_api():
    """The command's exits as exceptions: refused input raises its ConfigError, a failure RuntimeError."""
    from gdexp.core import errors

    errors._PRINTS[0] = False  # the error is raised, not also printed
    try:
        yield
    except InvalidInputExit as exc:
        raise _config_error(exc.error) from None
    except SystemExit as exc:
        if exc.code in (0, None):
            return
        raise RuntimeError(exc.code if isinstance(exc.code, str) else f"gdexp exited with status {exc.code}") from None
    finally:
        errors._PRINTS[0] = True


def _config_error(error) -> ConfigError:
    """The ConfigError of a refusal; one of Hydra's, already a line ``KEY=VALUE: reason``, keeps its text.

    >>> str(_config_error("loss='nope': no such option; options: beale, booth"))
    "loss='nope': no such option; options: beale, booth"
    >>> _config_error("loss='nope': no such option").key
    'loss'
    """
    if isinstance(error, ConfigError):
        return error
    line = str(error)
    key, eq, rest = line.partition("=")
    value, colon, reason = rest.partition(": ")
    out = ConfigError(key, value, reason) if eq and colon else ConfigError("input", None, line)
    out.args = (line,)  # the text the command prints, unquoted
    return out
