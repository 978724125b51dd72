"""Issue 9, sweeps and runs that ran the wrong thing or lost it, each defect by its kind:
a user's sweep in ./sweeps/ (2), a fresh store opened by two processes (4), one folder per
sweep (5), a job that raises inside a batch (8), ${hydra:...} in a job (10).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from gdexp.results.text import list_text
from cli_runner import runs_of
from mlflow import MlflowClient

SWEEPS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "sweeps.md"  # moved there from the README


def gdexp_process(*args: str, cwd: Path) -> subprocess.Popen:
    """The real command in its own process, on the store ./mlflow.db of `cwd`, with no migrated
    store kept from earlier (GDEXP_CACHE_DIR empty): a new store is made by MLflow's migrations."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GDEXP_PARENT_RUN_ID")}
    env["GDEXP_CACHE_DIR"] = str(cwd / "no-kept-store")
    return subprocess.Popen([sys.executable, "-m", "gdexp.commands.main", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- 2: the README's own sweep, from ./sweeps/ of the start folder --------------------------------
def readme_sweep() -> tuple[str, list[str]]:
    """The docs' "Writing your own sweep": its YAML as printed, and the command in its header."""
    section = re.split(r"^#+ Writing your own sweep", SWEEPS_PAGE.read_text(), maxsplit=1, flags=re.M)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)  # the section's first block
    command = next(line.lstrip("# ").split() for line in block.splitlines() if line.lstrip("# ").startswith("gdexp "))
    return block, command


def test_the_readme_sweep_runs_as_printed_from_the_start_folder(gdexp, store, tmp_path):
    text, command = readme_sweep()
    name = command[1].removeprefix("+sweep=")
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / f"{name}.yaml").write_text(text)
    code, out, err = gdexp("--help")
    assert re.search(rf"gdexp \+sweep={name} +.*\[sweeps/{name}.yaml\]", out), out
    code, out, err = gdexp(*command[1:])
    assert code == 0, err
    cl, children, parents = runs_of(store)
    grid = yaml.safe_load(text)
    params = grid["hydra"]["sweeper"]["params"]
    expected = len(params["optimizer"].split(",")) * int(re.search(r",(\d+)\)", params["optimizer.lr"]).group(1))
    assert len(parents) == 1 and parents[0].data.tags["gdexp.sweep_name"] == name
    assert len(children) == expected
    assert {r.data.params["optimizer.name"] for r in children} == set(params["optimizer"].split(","))
    assert {r.data.params["loss.eigenvalues"] for r in children} == {list_text(grid["loss"]["eigenvalues"])}
    assert {r.data.params["loss.rotate"] for r in children} == {"True"}


def test_a_users_sweep_replaces_a_shipped_one_of_the_same_name(gdexp, store, tmp_path):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "lr_grid.yaml").write_text(textwrap.dedent("""\
        # Mine: booth only.
        hydra:
          mode: MULTIRUN
          sweeper:
            params:
              optimizer.lr: 0.01,0.02
        # @package _global_
        defaults:
          - override /loss: booth
        stopping:
          maxiter: 30
        """))
    code, out, err = gdexp("+sweep=lr_grid")
    assert code == 0, err
    _, children, parents = runs_of(store)
    assert sorted(r.data.params["optimizer.lr"] for r in children) == ["0.01", "0.02"]
    assert {r.data.params["loss.name"] for r in children} == {"booth"}
    assert {r.data.params["stopping.maxiter"] for r in children} == {"30"}


# --- 4 and 5: two commands at once ----------------------------------------------------------------
PAIRS = [
    (["loss=quadratic", "stopping.maxiter=20"], ["loss=booth", "stopping.maxiter=20"]),
    (["-m", "loss=booth", "optimizer.lr=0.01,0.02", "stopping.maxiter=20"],
     ["-m", "loss=quadratic", "optimizer.lr=0.01,0.02,0.03", "stopping.maxiter=20"]),
    (["loss=himmelblau", "stopping.maxiter=20"], ["-m", "loss=beale", "optimizer.lr=0.001,0.002", "stopping.maxiter=20"]),
]


def test_two_commands_started_together_on_a_fresh_store_both_record_everything(tmp_path):
    """Both create the store at once (MLflow's migrations raced: `duplicate column`), each sweep
    in its own folder (Hydra's is named by the second)."""
    for n, (first, second) in enumerate(PAIRS):
        folder = tmp_path / f"try{n}"
        folder.mkdir()
        procs = [gdexp_process(*first, cwd=folder), gdexp_process(*second, cwd=folder)]
        outputs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outputs):
            assert p.returncode == 0, (n, err)
            assert "Traceback" not in err, (n, err)
        cl, children, parents = runs_of(f"sqlite:///{folder / 'mlflow.db'}")
        sweeps = [args for args in (first, second) if args[0] == "-m"]
        singles = [r for r in cl.search_runs([e.experiment_id for e in cl.search_experiments()])
                   if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("gdexp.sweep") != "true"]
        assert len(parents) == len(sweeps) and len(singles) == 2 - len(sweeps)
        assert len(children) == sum(len(a[2].partition("=")[2].split(",")) for a in sweeps)
        folders = {p.data.tags["gdexp.sweep_dir"] for p in parents}
        assert len(folders) == len(parents)
        for parent in parents:
            mine = [r for r in children if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
            saved = yaml.safe_load((Path(parent.data.tags["gdexp.sweep_dir"]) / "multirun.yaml").read_text())
            lrs = next(a for a in saved["hydra"]["overrides"]["task"] if a.startswith("optimizer.lr="))
            assert sorted(r.data.params["optimizer.lr"] for r in mine) == sorted(lrs.partition("=")[2].split(","))


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every clock gdexp and Hydra read for folder names stands at one second."""
    import hydra.core.utils

    moment = datetime(2026, 1, 2, 3, 4, 5)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return moment

    monkeypatch.setattr(hydra.core.utils, "datetime", Frozen)
    strftime = time.strftime  # datetime.strftime calls it: keep the real one for that
    monkeypatch.setattr(time, "strftime", lambda fmt, t=None: strftime(fmt, moment.timetuple()))
    return moment


def test_two_sweeps_in_the_same_second_get_their_own_folders(gdexp, store, frozen_clock):
    sweeps = [["-m", "loss=booth", "optimizer.lr=0.01,0.02", "stopping.maxiter=10"],
              ["loss=booth", "optimizer.lr=0.03,0.04,0.05", "stopping.maxiter=10", "-m"]]  # -m last, as Hydra allows
    for args in sweeps:
        code, _, err = gdexp(*args)
        assert code == 0, err
    cl, children, parents = runs_of(store)
    assert len(parents) == 2 and len(children) == 5
    folders = [Path(p.data.tags["gdexp.sweep_dir"]) for p in parents]
    assert folders[0] != folders[1] and all("2026-01-02" in str(f) for f in folders)
    for parent, folder in zip(parents, folders):
        mine = sorted(r.data.params["optimizer.lr"] for r in children
                      if r.data.tags["mlflow.parentRunId"] == parent.info.run_id)
        task = yaml.safe_load((folder / "multirun.yaml").read_text())["hydra"]["overrides"]["task"]
        assert sorted(next(a for a in task if a.startswith("optimizer.lr=")).partition("=")[2].split(",")) == mine
        jobs = sorted(folder.glob("*/.hydra/overrides.yaml"))
        assert len(jobs) == len(mine)
        assert sorted(o.partition("=")[2] for j in jobs for o in yaml.safe_load(j.read_text())
                      if o.startswith("optimizer.lr=")) == mine


def test_two_single_runs_in_the_same_second_get_their_own_folders(gdexp, store, tmp_path, frozen_clock):
    for lr in ("0.01", "0.02"):
        code, _, err = gdexp("loss=booth", f"optimizer.lr={lr}", "stopping.maxiter=10")
        assert code == 0, err
    configs = sorted((tmp_path / "outputs").glob("2026-01-02/*/.hydra/config.yaml"))
    assert len(configs) == 2
    assert sorted(yaml.safe_load(c.read_text())["optimizer"]["lr"] for c in configs) == [0.01, 0.02]


# --- 8: a job that raises inside a batch ----------------------------------------------------------
TRAP = '''
import numpy as np
from gdexp.core.losses.base import Loss


class Trap(Loss):
    """0.5 |x|^2 that raises once any point leaves the box |x_i| <= 10 (a runaway run)."""

    name = "trap"
    dim = 2
    flags_nonfinite_x = True

    def value_and_grad(self, x, rows=None):
        if np.any(np.abs(x) > 10):
            raise RuntimeError("left the box")
        return 0.5 * np.einsum("bi,bi->b", x, x), x.copy()

    def default_init(self):
        return np.ones(2)
'''


@pytest.fixture
def joblib_workers_ended():
    """End joblib's worker processes after the test. They outlive a sweep, and a later joblib
    sweep in this process would reuse them with this sweep's environment (its store, its
    parent run): a defect of its own, not this test's."""
    yield
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


@pytest.mark.parametrize("launcher", ["gdexp", "basic", "joblib"])
def test_a_job_that_raises_fails_alone_with_its_params(gdexp, store, tmp_path, monkeypatch, launcher,
                                                       joblib_workers_ended):
    """lr 2.5 grows by 1.5 a step and raises; lr 0.1 shares its batch and must not fail with it."""
    (tmp_path / "trap.py").write_text(TRAP)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = gdexp("-m", "loss=custom", "loss._target_=trap.Trap", "optimizer.lr=0.1,2.5",
                           "stopping.maxiter=200", f"hydra/launcher={launcher}")
    assert code == 1 and "1 of 2 runs failed" in err, err
    _, children, parents = runs_of(store)
    by_lr = {r.data.params["optimizer.lr"]: r for r in children}
    ok, failed = by_lr["0.1"], by_lr["2.5"]
    assert ok.info.status == "FINISHED" and ok.data.tags["gdexp.status"] in ("converged", "max_iters")
    assert failed.info.status == "FAILED" and "left the box" in failed.data.tags["gdexp.error"]
    assert failed.data.params == {**ok.data.params, "optimizer.lr": "2.5"}  # every param, like any run
    assert parents[0].data.metrics["failed"] == 1 and parents[0].data.metrics["runs"] == 2


def test_a_single_run_that_raises_is_failed_with_its_params(gdexp, store, tmp_path, monkeypatch):
    (tmp_path / "trap.py").write_text(TRAP)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError, match="left the box"):  # the command's traceback, exit status 1
        gdexp("loss=custom", "loss._target_=trap.Trap", "optimizer.lr=2.5", "stopping.maxiter=200")
    cl = MlflowClient(store)
    (run,) = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    assert run.info.status == "FAILED" and run.data.params["optimizer.lr"] == "2.5"
    assert run.data.params["loss._target_"] == "trap.Trap"


# --- 10: ${hydra:...} in a job's keys -------------------------------------------------------------
@pytest.mark.parametrize("launcher", ["gdexp", "basic"])
def test_hydra_interpolations_resolve_per_job(gdexp, store, tmp_path, launcher):
    code, _, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.02,0.03", "stopping.maxiter=5",
                         "tracking.experiment=${hydra:runtime.choices.loss}-${hydra:job.name}",
                         "seed=${hydra:job.num}", f"hydra/launcher={launcher}")
    assert code == 0, err
    cl, children, parents = runs_of(store)
    assert len(children) == 3
    experiments = {cl.get_experiment(r.info.experiment_id).name for r in [*children, *parents]}
    folder = Path(parents[0].data.tags["gdexp.sweep_dir"])
    job_name = yaml.safe_load((folder / "0" / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["name"]
    assert experiments == {f"booth-{job_name}"}
    # Each job's own number: the sweep's order of learning rates.
    assert sorted((r.data.params["optimizer.lr"], r.data.params["seed"]) for r in children) == \
        [("0.01", "0"), ("0.02", "1"), ("0.03", "2")]


def test_a_hydra_interpolation_in_the_store_uri_is_the_sweeps_store(gdexp, store, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    code, _, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.02", "stopping.maxiter=5",
                         "tracking.uri=sqlite:///${hydra:runtime.cwd}/other.db")
    assert code == 0, err
    _, children, parents = runs_of(f"sqlite:///{tmp_path / 'other.db'}")
    assert len(children) == 2 and len(parents) == 1


def test_a_hydra_interpolation_in_a_single_run(gdexp, store):
    code, _, err = gdexp("loss=booth", "stopping.maxiter=5", "tracking.experiment=${hydra:job.name}-single")
    assert code == 0, err
    cl = MlflowClient(store)
    assert [e.name for e in cl.search_experiments() if e.name.endswith("-single")]
