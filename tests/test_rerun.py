"""`gdexp rerun` re-executes logged runs and catches a changed curve or data file."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from gdexp.commands.rerun import compare
from gdexp.commands.rerun import main as rerun
from cli_runner import run_cli, store_in

# Linear regression on a CSV file, so each run logs the file's checksum; a budget
# that is not the default, so a rerun from today's defaults could not match.
SWEEP = ("-m", "loss=linear_regression", "loss.data=data.csv", "optimizer.lr=0.05,0.3",
         "stopping.maxiter=150", "stopping.gtol=0")



@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rerun")
    x = np.linspace(-1.0, 2.0, 30)
    pd.DataFrame({"x": x, "y": 1.5 * x - 0.5 + 0.1 * np.sin(7 * x)}).to_csv(folder / "data.csv", index=False)
    with store_in(folder) as uri:
        assert run_cli(*SWEEP) == 0
        cl = MlflowClient(uri)
        parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0].info.run_id
        runs = sorted(cl.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent}'"),
                      key=lambda r: float(r.data.params["optimizer.lr"]))
        yield SimpleNamespace(folder=folder, cl=cl, parent=parent, runs=runs)


def _run_count(cl: MlflowClient) -> int:
    return len(cl.search_runs(["1"]))


def test_a_fresh_run_reruns_identical_and_creates_no_run(sweep, capsys):
    run = sweep.runs[0]
    assert run.data.tags["gdexp.data_sha256"]
    before = _run_count(sweep.cl)
    assert rerun([run.info.run_id]) == 0
    assert capsys.readouterr().out == f"{run.info.run_name} ({run.info.run_id}): identical (151 steps)\n"
    assert _run_count(sweep.cl) == before


def test_a_whole_sweep_reruns_identical(sweep, capsys):
    assert rerun(["--sweep", sweep.parent]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1] for line in out[:2]] == ["identical (151 steps)"] * 2
    assert out[-1] == "2 of 2 runs identical"


def test_a_tampered_curve_is_reported_at_its_step(sweep, capsys):
    run = sweep.runs[1]
    path = Path(urlparse(run.info.artifact_uri).path) / "curve.parquet"  # the local store's file
    saved = path.with_suffix(".orig")
    shutil.copy(path, saved)
    try:
        curve = pd.read_parquet(path)
        logged = curve.loc[37, "loss"]
        curve.loc[37, "loss"] = np.nextafter(logged, np.inf)  # one ulp: bit for bit still differs
        curve.to_parquet(path, index=False)
        assert rerun([run.info.run_id]) == 1
        out = capsys.readouterr().out
        assert f"{run.info.run_name} ({run.info.run_id}): differs at step 37: loss " in out
        assert f"loss {float(curve.loc[37, 'loss'])!r} logged vs {float(logged)!r} rerun" in out
        assert rerun(["--sweep", sweep.parent]) == 1
        assert capsys.readouterr().out.splitlines()[-1] == "1 of 2 runs identical, 1 not"
    finally:
        shutil.move(saved, path)


def test_a_changed_data_file_is_named_and_not_rerun(sweep, capsys, monkeypatch):
    monkeypatch.chdir(sweep.folder)
    data = sweep.folder / "data.csv"
    original = data.read_bytes()
    try:
        data.write_bytes(original + b"3.0,4.0\n")
        assert rerun([sweep.runs[0].info.run_id]) == 1
        out = capsys.readouterr().out
        assert "data file data.csv changed since the run" in out
        assert f"logged {sweep.runs[0].data.tags['gdexp.data_sha256']}" in out
    finally:
        data.write_bytes(original)


def test_bad_arguments_exit_2(sweep, capsys):
    assert rerun([]) == 2
    assert "give RUN_ID" in capsys.readouterr().err
    assert rerun(["0" * 32]) == 2
    assert "not found" in capsys.readouterr().err


def test_compare_is_bit_for_bit_and_nan_equals_nan():
    logged = pd.DataFrame({"loss": [1.0, 0.5, np.nan], "grad_norm": [2.0, 1.0, np.nan]})
    same = {"loss": np.array([1.0, 0.5, np.nan]), "grad_norm": np.array([2.0, 1.0, np.nan])}
    assert compare("r", logged, same) == (True, "r: identical (3 steps)")
    shorter = {k: v[:2] for k, v in same.items()}
    assert compare("r", logged, shorter) == (
        False, "r: differs at step 2: the logged curve has 3 steps, the rerun 2")
    off = {"loss": same["loss"], "grad_norm": np.array([2.0, 1.25, np.nan])}
    assert compare("r", logged, off)[1] == "r: differs at step 1: grad_norm 1.0 logged vs 1.25 rerun (rel 2.0e-01)"
