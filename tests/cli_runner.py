"""Run the real `gdexp` command in-process (imports are paid once per test session)."""
from __future__ import annotations

import sys
from contextlib import contextmanager


def run_cli(*args: str) -> int:
    """gdexp ARGS in this process; returns its exit status (a message exit counts 1)."""
    import logging

    from hydra.core.global_hydra import GlobalHydra

    from gdexp.commands.main import main

    GlobalHydra.instance().clear()
    # Hydra points the root logger's handlers at this call's sys.stdout/stderr (pytest's capture,
    # closed after the test); a later call that logs before reconfiguring would write to them.
    handlers = list(logging.root.handlers)
    try:
        main(list(args))
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        GlobalHydra.instance().clear()
        logging.root.handlers[:] = handlers


def runs_of(uri: str):
    """(client, children, parents) of every experiment in the store at `uri`."""
    from mlflow import MlflowClient

    cl = MlflowClient(uri)
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()], max_results=10000)
    return (cl, [r for r in runs if "mlflow.parentRunId" in r.data.tags],
            [r for r in runs if r.data.tags.get("gdexp.sweep") == "true"])


@contextmanager
def store_in(folder):
    """A fresh SQLite store in `folder`, exported as MLFLOW_TRACKING_URI, cwd = folder.

    For module-scoped fixtures, which cannot use pytest's `store` fixture.
    """
    import pytest

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("GDEXP_PARENT_RUN_ID", raising=False)
        mp.chdir(folder)
        yield uri


def fail_artifacts(monkeypatch, when, error: BaseException) -> list:
    """Make writing a run's artifacts raise `error` when when(spec, call number) is true.

    Returns the list of learning rates whose artifacts were attempted, in order.
    """
    import gdexp.tracking.content as tracking

    real, calls = tracking.write_artifacts, []

    def flaky(folder, spec, traj):
        calls.append(spec.lr)
        if when(spec, len(calls)):
            raise error
        real(folder, spec, traj)

    monkeypatch.setattr(tracking, "write_artifacts", flaky)
    return calls
