"""gdexp.run and gdexp.sweep: the `gdexp` command from Python (a notebook, a script).

Both go through the same code as the command line, so the runs they record
are the ones `gdexp ...` records: same params, metrics, tags, artifacts,
run names, parent run and summary (tests/test_api.py compares the stores).
Bad input raises ConfigError (one line, no run made) instead of exiting.

They print nothing unless asked (``verbose=True`` prints what the command line
prints): every line the command would print goes to the ``gdexp`` logger
(Python's logging; stdout's lines at INFO, stderr's at WARNING), as Optuna and
MLflow report through theirs. ``logging.basicConfig(level=logging.INFO)`` shows them.
"""
from __future__ import annotations

import io
import logging
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout

import pandas as pd

from gdexp.core.errors import ConfigError, InvalidInputExit

# Hydra's logging set-up is left out of a run from Python: it would take over the
# notebook's root logger and write a .hydra/ folder per call. The store is the same.
_QUIET = ("hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none")


log = logging.getLogger("gdexp")
# A library's logger stays silent until the application configures logging (Python's logging
# HOWTO): without it, Python's last-resort handler would print gdexp's warnings in a notebook.
log.addHandler(logging.NullHandler())


def run(overrides: list[str] | tuple[str, ...] = (), verbose: bool = False) -> dict:
    """One run, as `gdexp OVERRIDES...` would make it; returns its summary row.

    Args:
        overrides: Hydra overrides, e.g. ``["loss=quadratic", "optimizer.lr=0.01"]``.
        verbose: print what the command line prints (else it goes to the ``gdexp`` logger only).

    Returns:
        The run's row (gdexp.tracking.content.run_row): run_id, run_name, status,
        final_loss, best_loss, iterations, diverged_step, lr, ... and every param
        under its dotted key, typed as gdexp.load_runs types them (``optimizer.lr``
        a float, ``stopping.maxiter`` an int, a list its text ``[1,100]``, null None).

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
    with _as_api(verbose):
        run_hydra([*overrides, *_QUIET])
    row = last_row()
    if row is None:
        raise RuntimeError(f"gdexp.run({list(overrides)!r}) made no run (for a sweep, use gdexp.sweep)")
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


def sweep(overrides: list[str] | tuple[str, ...] = (), verbose: bool = False) -> pd.DataFrame:
    """A sweep, as `gdexp -m OVERRIDES...` would run it; returns its runs as gdexp.load_runs does.

    A named sweep works too: ``sweep(["+sweep=lr_grid", "stopping.maxiter=500"])``.

    Args:
        overrides: Hydra overrides; comma lists and grids (``optimizer.lr='logspace(1e-4,1,13)'``)
            make the sweep's jobs, as on the command line.
        verbose: print what the command line prints (else it goes to the ``gdexp`` logger only).

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
    with _as_api(verbose):
        run_hydra(["-m", *overrides])
    opened = last_sweep()
    if opened is None:
        raise RuntimeError(f"gdexp.sweep({list(overrides)!r}) ran no sweep")
    parent_id, uri = opened
    return load_runs(sweep=parent_id, tracking_uri=uri)


class _ToLogger(io.TextIOBase):
    """A text stream whose lines go to the gdexp logger at `level` (and on to `echo`, when given).

    What a handler writes to this stream while a line is being logged (one Hydra set up on
    sys.stdout while it was this stream, passing the line on) is that line again: dropped."""

    def __init__(self, level: int, echo=None):
        self._level, self._echo, self._part, self._busy = level, echo, "", False

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False  # no progress bar redrawn in a log

    def write(self, text: str) -> int:
        if self._busy:
            return len(text)
        if self._echo is not None:
            self._echo.write(text)
        lines = (self._part + text).split("\n")
        self._part = lines.pop()
        self._busy = True
        try:
            for line in lines:
                if line.strip():
                    log.log(self._level, line)
        finally:
            self._busy = False
        return len(text)

    def flush(self) -> None:
        if self._echo is not None:
            self._echo.flush()


@contextmanager
def _as_api(verbose: bool = False):
    """The command's exits as exceptions: refused input raises its ConfigError, a failure RuntimeError;
    what it prints goes to the gdexp logger (and to the screen too when `verbose`)."""
    from gdexp.core import errors

    errors._PRINTS[0] = False  # the error is raised, not also printed
    out = _ToLogger(logging.INFO, sys.stdout if verbose else None)
    err = _ToLogger(logging.WARNING, sys.stderr if verbose else None)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # Hydra's set-up of a sweep is undone after it
    try:
        with redirect_stdout(out), redirect_stderr(err):
            yield
        out.write("\n"), err.write("\n")  # a last line without its newline
    except InvalidInputExit as exc:
        raise _config_error(exc.error) from None
    except SystemExit as exc:
        if exc.code in (0, None):
            return
        raise RuntimeError(exc.code if isinstance(exc.code, str) else f"gdexp exited with status {exc.code}") from None
    finally:
        errors._PRINTS[0] = True
        root.handlers[:] = handlers
        root.setLevel(level)


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
