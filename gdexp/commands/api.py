"""gdexp.run and gdexp.sweep: the `gdexp` command from Python (a notebook, a script).

Both go through the same code as the command line, so the runs they record
are the ones `gdexp ...` records: same params, metrics, tags, artifacts,
parent run and summary. Bad input raises ConfigError (one line, no run made)
instead of exiting.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from gdexp.core.errors import ConfigError, InvalidInputExit


def run(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """One run, as `gdexp OVERRIDES...` would make it; returns its summary row.

    Args:
        overrides: Hydra overrides, e.g. ``["loss=quadratic", "optimizer.lr=0.01"]``.

    Returns:
        The run's row: run_id, run_name, status, final_loss, best_loss, iterations,
        diverged_step, lr, ... and every param under its dotted key (MLflow's strings).

    Raises:
        ConfigError: bad input (nothing recorded).
        RuntimeError: the run failed, or the store did not take it (it is kept on disk).

    >>> row = run(["loss=booth", "optimizer.lr=0.05"])  # doctest: +SKIP
    >>> row["status"], round(row["final_loss"], 12)      # doctest: +SKIP
    ('converged', 0.0)
    """
    from gdexp.commands.main import run_hydra
    from gdexp.hydra.task import last_row

    with _as_api():
        run_hydra([*overrides, "hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"])
    return last_row()


def sweep(overrides: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """A sweep, as `gdexp -m OVERRIDES...` would run it; returns its runs as gdexp.load_runs does.

    A named sweep works too: ``sweep(["+sweep=lr_grid", "stopping.maxiter=500"])``.

    Returns:
        One typed row per run of the sweep (gdexp.tracking.reader.load_runs' columns),
        read back from the store the sweep wrote to.

    Raises:
        ConfigError: bad input (nothing recorded).
        RuntimeError: runs failed or were kept on disk; the message says which.
    """
    from gdexp.commands.main import run_hydra
    from gdexp.tracking import TAG
    from gdexp.tracking.reader import load_runs
    from gdexp.tracking.store import client, resolve_uri

    folder = Path("multirun") / f"api-{pd.Timestamp.now().strftime('%Y%m%d-%H%M%S-%f')}"
    argv = ["-m", *overrides]
    if not any(o.lstrip("+").startswith("hydra.sweep.dir=") for o in overrides):
        argv.append(f"hydra.sweep.dir={folder}")
    with _as_api():
        run_hydra(argv)
    uri = resolve_uri(_configured_uri(overrides))
    cl = client(uri)
    ids = [e.experiment_id for e in cl.search_experiments()]
    wanted = str(Path(_sweep_dir(overrides) or folder).resolve())
    parents = cl.search_runs(ids, f"tags.`{TAG}sweep_dir` = '{wanted}'", order_by=["attributes.start_time DESC"])
    return load_runs(sweep=parents[0].info.run_id, tracking_uri=uri)


@contextmanager
def _as_api():
    """The command's exits as exceptions: refused input raises its ConfigError, a failure RuntimeError."""
    try:
        yield
    except InvalidInputExit as exc:
        error = exc.error
        raise (error if isinstance(error, ConfigError) else ConfigError("input", str(error), "refused")) from None
    except SystemExit as exc:
        if exc.code in (0, None):
            return
        raise RuntimeError(exc.code if isinstance(exc.code, str) else f"gdexp exited with status {exc.code}") from None


def _configured_uri(overrides) -> str | None:
    for o in overrides:
        if o.startswith("tracking.uri="):
            return o.partition("=")[2]
    return None


def _sweep_dir(overrides) -> str | None:
    for o in overrides:
        if o.lstrip("+").startswith("hydra.sweep.dir="):
            return o.partition("=")[2]
    return None
