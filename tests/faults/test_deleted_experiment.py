"""A deleted experiment (issue 20, item 5): every command says so in one line before any descent,
naming the experiment, its store and how to restore it; load_runs raises NotFound. The store
is read through MLflow's client: no run is added to it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fault_tools import all_runs

pytestmark = pytest.mark.faults

LAUNCHERS = ("gdexp", "basic", "joblib")


def _delete(uri: str, name: str) -> str:
    from mlflow import MlflowClient

    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name(name).experiment_id
    cl.delete_experiment(exp)
    return exp


def _says_deleted(line: str, uri: str, name: str, exp: str) -> None:
    assert f"experiment '{name}' (id {exp}) in {uri} is deleted" in line, line
    assert f"mlflow experiments restore --experiment-id {exp}" in line and "tracking.experiment=NAME" in line, line


@pytest.mark.parametrize("name", ["gdexp", "my runs"])
def test_a_deleted_experiment_is_one_line_before_any_descent(gdexp, store, tmp_path, name):
    assert gdexp("loss=booth", "stopping.maxiter=5", f"tracking.experiment={name}")[0] == 0
    exp = _delete(store, name)
    before = len(all_runs(store))
    for launcher in LAUNCHERS:
        for args in (["loss=booth"], ["-m", "loss=booth", "optimizer.lr=0.01,0.02", f"hydra/launcher={launcher}"]):
            code, out, err = gdexp(*args, "stopping.maxiter=5", f"tracking.experiment={name}")
            lines = [line for line in err.splitlines() if line.strip()]
            assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
            assert lines[0].startswith(f"gdexp: error: tracking.experiment='{name}': "), lines[0]
            _says_deleted(lines[0], store, name, exp)
    assert len(all_runs(store)) == before  # nothing added, the deleted experiment left as it was
    from mlflow import MlflowClient

    assert MlflowClient(store).get_experiment(exp).lifecycle_stage == "deleted"


def test_the_python_api_raises_not_found_for_a_deleted_experiment(gdexp, store):
    import gdexp as api
    from gdexp.core.errors import NotFound

    assert gdexp("loss=booth", "stopping.maxiter=5")[0] == 0
    exp = _delete(store, "gdexp")
    with pytest.raises(NotFound) as run_error:
        api.run(["loss=booth", "stopping.maxiter=5"])
    _says_deleted(str(run_error.value), store, "gdexp", exp)
    with pytest.raises(NotFound) as read_error:
        api.load_runs(experiment="gdexp", tracking_uri=store)
    _says_deleted(str(read_error.value), store, "gdexp", exp)
    assert len(all_runs(store)) == 1


def test_restoring_it_as_the_line_says_lets_runs_go_on(gdexp, store):
    import subprocess

    assert gdexp("loss=booth", "stopping.maxiter=5")[0] == 0
    exp = _delete(store, "gdexp")
    line = gdexp("loss=booth", "stopping.maxiter=5")[2]
    command = line.split("`")[1]  # the command the line gives, run as a user would
    env_part, _, restore = command.partition(" ")
    program, *rest = restore.split()  # `mlflow`, from the venv that runs the tests (its bin/ may not be on PATH)
    subprocess.run([str(Path(sys.executable).with_name(program)), *rest], check=True, capture_output=True,
                   env={**__import__("os").environ, env_part.split("=")[0]: env_part.split("=", 1)[1]})
    assert gdexp("loss=booth", "stopping.maxiter=5")[0] == 0
    assert sum(r.info.status == "FINISHED" for r in all_runs(store)) == 2
