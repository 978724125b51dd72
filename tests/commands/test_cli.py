"""The gdexp command: the issue's example command lines, bad input, failures, sweeps."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_runner import fail_artifacts
from mlflow import MlflowClient


def all_runs(uri):
    cl = MlflowClient(uri)
    return cl, cl.search_runs([e.experiment_id for e in cl.search_experiments()])


def test_the_documented_command_lines_work(gdexp, store, tmp_path):
    pd.DataFrame({"col_a": [0.0, 1.0, 2.0, 3.0], "col_b": [1.0, 3.1, 4.9, 7.0]}).to_csv(tmp_path / "d.csv", index=False)
    commands = [
        ["loss=quadratic", "loss.eigenvalues=[1,10,100]", "optimizer=gd", "optimizer.lr=0.015", "stopping.maxiter=500"],
        ["loss=rosenbrock", "init=[-1.5,2.0]", "optimizer=adam", "optimizer.lr=0.01"],
        ["loss=linear_regression", "loss.data=d.csv", "loss.x=col_a", "loss.y=col_b"],
    ]
    for args in commands:
        code, _, err = gdexp(*args)
        assert code == 0, (args, err)
    cl, runs = all_runs(store)
    names = sorted(r.info.run_name for r in runs)
    assert names == ["linear_regression-gd-lr=0.001", "quadratic-gd-lr=0.015", "rosenbrock-adam-lr=0.01"]
    lin = next(r for r in runs if r.info.run_name.startswith("linear"))
    assert lin.data.params["loss.data"] == "d.csv" and len(lin.data.tags["gdexp.data_sha256"]) == 64


BAD = [
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
    (["optimizer.lr=nan"], "optimizer.lr=nan"),
    (["optimizer.lrr=0.1"], "optimizer.lrr"),
    (["loss=nope"], "nope"),
    (["stopping.maxiter=0"], "stopping.maxiter=0"),
    (["init=[1.0,2.0,3.0]"], "init=[1.0, 2.0, 3.0]"),
    (["loss=quadratic", "loss.eigenvalues=[1,-2]"], "loss.eigenvalues"),
    (["loss=linear_regression", "loss.data=missing.csv"], "loss.data='missing.csv'"),
    (["loss=linear_regression", "loss.data=d.csv", "loss.x=nope"], "loss.x='nope'"),
    (["optimizer=adam", "optimizer.beta1=1.5"], "optimizer.beta1=1.5"),
]


@pytest.mark.parametrize("args, named", BAD, ids=[b[1] for b in BAD])
def test_bad_input_is_one_clear_error_before_any_run(gdexp, store, tmp_path, args, named):
    pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, 2.0]}).to_csv(tmp_path / "d.csv", index=False)
    code, out, err = gdexp(*args)
    assert code != 0
    assert named in err
    assert "Traceback" not in err
    if (tmp_path / "mlflow.db").exists():
        assert all_runs(store)[1] == []


def test_multirun_makes_a_parent_with_every_job_as_child(gdexp, store):
    code, out, err = gdexp("-m", "loss=quadratic", "optimizer.lr=0.0001,0.001,0.01,0.1", "stopping.maxiter=300")
    assert code == 0, err
    cl, runs = all_runs(store)
    parents = [r for r in runs if r.data.tags.get("gdexp.sweep") == "true"]
    assert len(parents) == 1 and len(runs) == 5
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(float(r.data.params["optimizer.lr"]) for r in children) == [0.0001, 0.001, 0.01, 0.1]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["runs"] == 4 and parent.data.metrics["diverged"] == 1
    assert parent.data.metrics["failed"] == 0 and parent.data.metrics["max_stable_lr"] == 0.01
    summary = pd.read_csv(cl.download_artifacts(parent.info.run_id, "summary.csv"))
    assert list(summary["lr"]) == [0.0001, 0.001, 0.01, 0.1]
    assert list(summary["status"]) == ["max_iters", "max_iters", "max_iters", "diverged"]
    assert "quadratic-gd-lr=0.1" in out and "runs=4, diverged=1, failed=0" in out
    assert "mlflow ui --backend-store-uri" in out


def test_a_failing_run_is_marked_failed_and_the_sweep_goes_on(gdexp, store, monkeypatch):
    fail_artifacts(monkeypatch, lambda spec, n: spec.lr == 0.001, OSError("disk full (injected)"))
    code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=0.0001,0.001,0.01", "stopping.maxiter=50")
    assert code != 0 and "1 of 3 runs failed" in err and "disk full (injected)" in err
    cl, runs = all_runs(store)
    by_name = {r.info.run_name: r for r in runs}
    failed = by_name["booth-gd-lr=0.001"]
    assert failed.info.status == "FAILED" and "disk full" in failed.data.tags["gdexp.error"]
    # What it had logged before the failure is kept: params, curves, status tags.
    assert failed.data.params["optimizer.lr"] == "0.001"
    assert len(cl.get_metric_history(failed.info.run_id, "loss")) == 51
    assert by_name["booth-gd-lr=0.0001"].info.status == "FINISHED"
    assert by_name["booth-gd-lr=0.01"].info.status == "FINISHED"
    parent = next(r for r in runs if r.data.tags.get("gdexp.sweep") == "true")
    assert parent.info.status == "FAILED" and parent.data.metrics["failed"] == 1


def test_ctrl_c_marks_the_run_and_its_sweep_killed(gdexp, store, monkeypatch):
    fail_artifacts(monkeypatch, lambda spec, n: n == 2, KeyboardInterrupt())
    code, _, _ = gdexp("-m", "loss=booth", "optimizer.lr=0.001,0.01,0.1")
    assert code == 130
    _, runs = all_runs(store)
    status = {r.info.run_name: r.info.status for r in runs}
    # The chunk's runs are written in one transaction after their files: interrupted while
    # writing the files, the store has none of them (no half-written run), the parent KILLED.
    assert status == {"optimizer.lr loss=booth": "KILLED"}
    assert "GDEXP_PARENT_RUN_ID" not in os.environ


def test_console_script_runs_a_sweep_from_another_folder(tmp_path):
    """The installed `gdexp` finds its configs wherever it is started (CI installs non-editable)."""
    exe = Path(sys.executable).with_name("gdexp")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from gdexp.commands.main import main; main()"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    env.pop("MLFLOW_TRACKING_URI")
    done = subprocess.run([*cmd, "-m", "loss=booth", "optimizer.lr=0.01,0.2", "stopping.maxiter=100"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "runs=2, diverged=1, failed=0" in done.stdout
    assert f"sqlite:///{tmp_path / 'mlflow.db'}" in done.stdout
    _, runs = all_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(runs) == 3


def test_help_lists_the_named_sweeps_and_commands(gdexp, store):
    code, out, err = gdexp("--help")
    assert code == 0
    for name in ("lr_grid", "lr_by_optimizer", "conditioning", "lr_find", "lr_optuna"):
        assert f"gdexp +sweep={name}" in out
    assert "gdexp report --help" in out and "gdexp rerun --help" in out


@pytest.mark.parametrize("args, line", [
    (["compare", "abc"], "gdexp compare: error: give two sweeps or more (one sweep: gdexp report --sweep ID) "
                         "(see gdexp compare --help)"),
    (["report", "--bogus"], "gdexp report: error: unrecognized arguments: --bogus (see gdexp report --help)"),
    (["rerun", "--sweep"], "gdexp rerun: error: argument --sweep: expected one argument (see gdexp rerun --help)"),
    (["resume"], "gdexp resume: error: the following arguments are required: folder (see gdexp resume --help)"),
], ids=["compare", "report", "rerun", "resume"])
def test_a_subcommands_wrong_arguments_are_one_line(gdexp, store, args, line):
    """argparse's usage block is left out: one line, as every refusal, and exit status 2."""
    code, out, err = gdexp(*args)
    assert (code, out, err.strip()) == (2, "", line)
