"""api.run and api.sweep record exactly what the `gdexp` command records, and refuse bad input the same way.

Each comparison runs the same overrides through the CLI into one SQLite store
and through the Python API into another, then compares the two stores whole
(tests/store_snapshot.py): params, metrics and their histories, tags,
artifacts, run names, parents.
"""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

import gdexp as api  # `gdexp` is the CLI's fixture here
from gdexp.core.errors import ConfigError
from gdexp.core.outcomes import CONVERGED, DIVERGED, MAX_ITERS
from store_snapshot import differences, snapshot

PUBLIC = ["__version__", "ConfigError", "run", "sweep", "load_runs", "load_curve"]


@pytest.fixture
def api_store(store, tmp_path, monkeypatch):
    """A second fresh store, in its own folder, for the API's runs: (cli uri, api uri)."""
    folder = tmp_path / "api"
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"

    def use_api_store():
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(folder)

    use_api_store.uri = uri
    return use_api_store


def runs_in(uri: str) -> list:
    db = Path(uri[len("sqlite:///"):])
    if not db.exists():
        return []
    cl = MlflowClient(tracking_uri=uri)
    return cl.search_runs([e.experiment_id for e in cl.search_experiments()])


# --- the same store ----------------------------------------------------------------------

def test_run_records_what_the_cli_records(gdexp, store, api_store):
    overrides = ["loss=booth", "optimizer.lr=0.05", "stopping.maxiter=60", "tracking.curve_points=25"]
    assert gdexp(*overrides)[0] == 0
    api_store()
    row = api.run(overrides)
    by_cli, by_api = snapshot(store), snapshot(api_store.uri)
    assert list(by_api) == ["booth-gd-lr=0.05"]
    assert differences(by_cli, by_api) == []
    # the row is the run's: its id, name, status and numbers as stored
    (run,) = runs_in(api_store.uri)
    assert row["run_id"] == run.info.run_id and row["run_name"] == run.info.run_name
    assert row["status"] == run.data.tags["gdexp.status"] == MAX_ITERS
    assert row["final_loss"] == run.data.metrics["final_loss"] and row["iterations"] == 60
    assert row["optimizer.lr"] == 0.05 and row["stopping.maxiter"] == 60  # typed, as load_runs types them


@pytest.mark.parametrize("overrides,runs", [
    (["loss=booth,quadratic", "optimizer.lr=0.01,0.1", "stopping.maxiter=40", "tracking.curve_points=15"],
     {"booth-gd-lr=0.01", "booth-gd-lr=0.1", "quadratic-gd-lr=0.01", "quadratic-gd-lr=0.1",
      "loss x optimizer.lr stopping.maxiter=40"}),
    # a named sweep: its own params (loss, lr grid) replaced on the command line, as a user does
    (["+sweep=lr_grid", "loss=booth", "optimizer.lr=0.01,0.3", "stopping.maxiter=40"],
     {"booth-gd-lr=0.01", "booth-gd-lr=0.3", "lr_grid loss=booth optimizer.lr=0.01,0.3 stopping.maxiter=40"}),
], ids=["grid", "named"])
def test_sweep_records_what_the_cli_records(gdexp, store, api_store, overrides, runs):
    assert gdexp("-m", *overrides)[0] == 0
    api_store()
    table = api.sweep(overrides)
    by_cli, by_api = snapshot(store), snapshot(api_store.uri)
    assert set(by_api) == runs
    assert differences(by_cli, by_api) == []
    # the table is the sweep's, as load_runs reads it
    parent = next(name for name in runs if " " in name)
    assert by_api[parent]["tags"]["gdexp.command"] == "gdexp -m " + " ".join(overrides)
    assert sorted(table["run_name"]) == sorted(runs - {parent})
    assert set(table["sweep_id"]) == {r.info.run_id for r in runs_in(api_store.uri) if r.info.run_name == parent}
    pd.testing.assert_frame_equal(table, api.load_runs(sweep=table["sweep_id"].iloc[0],
                                                         tracking_uri=api_store.uri))
    assert table["lr"].dtype == np.float64 and str(table["iterations"].dtype) == "Int64"
    assert set(table["status"]) <= {CONVERGED, DIVERGED, MAX_ITERS}


def test_a_diverged_run_is_a_row_not_an_error(store):
    row = api.run(["loss=quadratic", "optimizer.lr=0.1", "stopping.maxiter=100"])  # 0.1 > 2/100
    assert row["status"] == DIVERGED and row["diverged"] is True and row["diverged_step"] >= 1


# --- refused input: ConfigError, one line, nothing recorded --------------------------------

@pytest.mark.parametrize("call,overrides,line,key", [
    ("run", ["optimizer.lr=-1"], "optimizer.lr=-1: must be finite and > 0", "optimizer.lr"),
    ("run", ["loss=nope"], "loss='nope': no such option; options: beale, booth, custom, expression, "
     "himmelblau, linear_regression, logistic_regression, mlp, quadratic, rastrigin, rosenbrock, torch", "loss"),
    ("run", ["optimizer.lrr=0.1"], "optimizer.lrr=0.1: not a config key; valid keys of optimizer=gd: lr, "
     "weight_decay", "optimizer.lrr"),
    ("run", ["stopping.maxiter=ten"], "stopping.maxiter='ten': must be an integer", "stopping.maxiter"),
    ("sweep", ["optimizer.lr=0.1,-1"], "optimizer.lr=-1: must be finite and > 0 "
     "(job #1: optimizer.lr=-1)", "optimizer.lr"),
    ("sweep", ["optimizer.lr='logspace(1,0)'"], None, "optimizer.lr"),
    ("sweep", ["+sweep=nope"], None, "sweep"),
], ids=["value", "option", "key", "type", "sweep-value", "grid", "named"])
def test_bad_input_raises_one_line_and_records_nothing(store, capsys, call, overrides, line, key):
    with pytest.raises(ConfigError) as info:
        getattr(api, call)(overrides)
    text = str(info.value)
    assert "\n" not in text and info.value.key == key
    if line is not None:
        assert text == line
    assert "gdexp: error" not in capsys.readouterr().err  # raised, not also printed (the CLI prints it)
    assert runs_in(store) == []


@pytest.mark.parametrize("overrides,said", [
    (["--cfg", "job"], "--cfg: a flag of the command"),
    (["-m", "optimizer.lr=0.1"], "a sweep, not one run: use gdexp.sweep"),
    (["+sweep=lr_grid"], "a sweep, not one run: use gdexp.sweep"),
], ids=["flag", "multirun", "named-sweep"])
def test_a_call_that_makes_no_run_says_so_and_records_nothing(store, capsys, overrides, said):
    with pytest.raises(ConfigError, match=said):
        api.run(overrides)
    assert capsys.readouterr() == ("", "")  # the API prints nothing
    assert runs_in(store) == []


# --- the public names --------------------------------------------------------------------

def test_all_lists_the_public_names_and_dir_shows_them():
    assert api.__all__ == PUBLIC
    assert dir(api) == sorted(PUBLIC)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        api.nope  # noqa: B018


@pytest.mark.parametrize("name", [n for n in PUBLIC if n != "__version__"])
def test_each_public_name_resolves_and_has_a_docstring(name):
    obj = getattr(api, name)
    doc = inspect.getdoc(obj) or ""
    assert len(doc.splitlines()) >= 3, f"gdexp.{name} needs a docstring"
    if name != "ConfigError":
        assert "Returns:" in doc and "Raises:" in doc


def test_run_and_sweep_document_what_they_raise():
    for fn in (api.run, api.sweep):
        doc = inspect.getdoc(fn)
        assert "ConfigError" in doc and "RuntimeError" in doc and "Returns:" in doc


def test_importing_gdexp_loads_no_framework():
    """The API's names load on first use: `import gdexp` (and every job's start) stays instant."""
    script = "import gdexp, json, sys; print(json.dumps([m for m in ('mlflow', 'hydra', 'pandas', 'numpy') " \
             "if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(api.__file__).parents[1])})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert api.__version__.count(".") == 2
