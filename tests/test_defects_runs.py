"""Issue 9, sweeps and runs that ran the wrong thing or lost it, each defect by its kind:
a user's sweep in ./sweeps/ (2), a fresh store opened by two processes (4), one folder per
sweep (5), a job that raises inside a batch (8), ${hydra:...} in a job (10), params too long
for MLflow (14), curves that end in NaN (15), what a run prints and logs (16).
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
from mlflow import MlflowClient

README = Path(__file__).resolve().parent.parent / "README.md"


def runs_of(uri: str):
    """(client, children, parents) of every experiment in the store."""
    cl = MlflowClient(uri)
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()], max_results=10000)
    return (cl, [r for r in runs if "mlflow.parentRunId" in r.data.tags],
            [r for r in runs if r.data.tags.get("gdexp.sweep") == "true"])


def gdexp_process(*args: str, cwd: Path) -> subprocess.Popen:
    """The real command in its own process, on the store ./mlflow.db of `cwd`, with no migrated
    store kept from earlier (GDEXP_CACHE_DIR empty): a new store is made by MLflow's migrations."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GDEXP_PARENT_RUN_ID")}
    env["GDEXP_CACHE_DIR"] = str(cwd / "no-kept-store")
    return subprocess.Popen([sys.executable, "-m", "gdexp.commands.main", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- 2: the README's own sweep, from ./sweeps/ of the start folder --------------------------------
def readme_sweep() -> tuple[str, list[str]]:
    """The README's "Writing your own sweep": its YAML as printed, and the command in its header."""
    section = README.read_text().split("### Writing your own sweep", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
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
    assert {r.data.params["loss.eigenvalues"] for r in children} == {json.dumps([float(v) for v in grid["loss"]["eigenvalues"]])}
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


# --- 14: params longer than MLflow keeps ----------------------------------------------------------
def test_params_too_long_for_mlflow_are_stand_ins_and_read_back_whole(gdexp, store):
    import gdexp as api

    n = 1500
    eigenvalues = [1.0 + i / 100 for i in range(n)]
    center = [round(0.001 * i, 3) for i in range(n)]
    start = [1.0] * n
    lists = {"loss.eigenvalues": eigenvalues, "loss.center": center, "init": start}
    overrides = [f"{k}={json.dumps(v).replace(' ', '')}" for k, v in lists.items()]
    code, _, err = gdexp("loss=quadratic", *overrides, "optimizer.lr=0.001", "stopping.maxiter=5")
    assert code == 0, err
    code, _, err = gdexp("-m", "loss=quadratic", *overrides, "optimizer.lr=0.001,0.002", "stopping.maxiter=5")
    assert code == 0, err
    cl, children, _ = runs_of(store)
    runs = [r for r in cl.search_runs([e.experiment_id for e in cl.search_experiments()]) if "loss.center" in r.data.params]
    assert len(runs) == 3 and len(children) == 2
    for run in runs:
        assert max(len(v) for v in run.data.params.values()) <= 6000
        for key, value in lists.items():
            text = json.dumps(value)
            assert run.data.params[key].startswith(f"gdexp:too-long len={len(text)} sha256=")
    table = api.load_runs(experiment="gdexp")
    assert len(table) == 3
    for key, value in lists.items():
        assert [json.loads(v) for v in table[key]] == [value] * 3


# --- 15: a curve that ends in NaN -----------------------------------------------------------------
def test_curves_that_end_non_finite_keep_only_finite_points_in_mlflow(gdexp, store):
    """lr 1 on eigenvalues up to 100, no divergence threshold: the loss runs to inf, then NaN."""
    code, _, err = gdexp("loss=quadratic", "optimizer.lr=1.0", "stopping.divergence_factor=inf",
                         "stopping.maxiter=2000", "schedule=step", "schedule.step_size=1000", "schedule.gamma=0.9",
                         "tracking.sharpness_every=5")
    assert code == 0, err
    cl = MlflowClient(store)
    (run,) = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    assert run.data.tags["gdexp.status"] == "diverged"
    for key in ("loss", "grad_norm", "lr", "sharpness"):
        history = cl.get_metric_history(run.info.run_id, key)
        assert len(history) > 10, key
        assert all(abs(m.value) < 1e308 for m in history), key  # no nan, no inf (MLflow stores inf as 1.8e308)
    assert all(abs(v) < 1e308 for v in run.data.metrics.values())  # every latest value, as the UI's charts read them
    curve = __import__("pandas").read_parquet(Path(cl.download_artifacts(run.info.run_id, "curve.parquet")))
    assert not curve["loss"].iloc[-5:].map(lambda v: abs(v) < 1e308).all()  # the file keeps every step


# --- 16: what a run says, and its log ---------------------------------------------------------------
LINE = re.compile(r"^booth-gd-lr=0\.01: (converged|max_iters) after \d+ steps, final loss \S+ \(run ([0-9a-f]{32})\)$")


def test_a_single_run_prints_its_line_and_where_to_look_and_logs_it(gdexp, store, tmp_path):
    code, out, err = gdexp("loss=booth", "optimizer.lr=0.01", "stopping.maxiter=50")
    assert code == 0, err
    lines = out.splitlines()
    match = LINE.match(lines[0])
    assert match, out
    run_id = match.group(2)
    assert f"Runs are in {store}, run {run_id}." in out and "mlflow ui --backend-store-uri" in out
    assert f"/runs/{run_id}" in out
    (log,) = (tmp_path / "outputs").glob("*/*/*.log")
    assert f"[gdexp] {lines[0]}" in log.read_text()


@pytest.mark.parametrize("launcher", ["gdexp", "basic"])
def test_every_job_of_a_sweep_logs_its_line_in_its_folder(gdexp, store, launcher):
    code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.02", "stopping.maxiter=50",
                           f"hydra/launcher={launcher}")
    assert code == 0, err
    cl, children, parents = runs_of(store)
    folder = Path(parents[0].data.tags["gdexp.sweep_dir"])
    logged = {}
    for n in ("0", "1"):
        (log,) = (folder / n).glob("*.log")
        (line,) = [line for line in log.read_text().splitlines() if line.startswith("[gdexp] ")]
        logged[line.split(": ", 1)[0].removeprefix("[gdexp] ")] = line
    assert sorted(logged) == sorted(r.info.run_name for r in children)
    for run in children:
        assert logged[run.info.run_name].endswith(f"(run {run.info.run_id})")


# --- reading back what every kind of loss recorded (found by .ci/base_install_check.sh) ---------------
def test_only_parameters_are_taken_for_path_coordinates(gdexp, store):
    """An MLP's curve.parquet has train_loss and train_accuracy columns, no parameters: its two
    measurements were drawn as a 2-D descent path, and `gdexp report --experiment` crashed."""
    import gdexp as api
    from gdexp.report.select import coordinates

    code, _, err = gdexp("-m", "loss=booth,mlp", "optimizer.lr=0.01", "stopping.maxiter=10", "tracking.eval_every=5")
    assert code == 0, err
    runs = api.load_runs()
    found = {row.loss: coordinates(api.load_curve(row.run_id).columns) for row in runs.itertuples()}
    assert found == {"booth": ["x[0]", "x[1]"], "mlp": []}


# --- 20: what `pytest --doctest-modules gdexp` found ------------------------------------------------
def test_a_sweep_runs_after_gdexps_sweepers_were_imported_first(tmp_path):
    """Importing sweepers/grid.py before any Hydra app (as doctest collection does) subclassed a
    BasicSweeper that Hydra's first plugin scan then replaced: every later sweep failed."""
    script = ("import gdexp.hydra.sweepers.grid, gdexp.hydra.sweepers.lr_find\n"
              "from gdexp.commands.main import main\n"
              "main(['-m', 'loss=booth', 'optimizer.lr=0.01,0.1', 'stopping.maxiter=5'])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GDEXP_PARENT_RUN_ID")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    _, children, parents = runs_of(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(children) == 2 and len(parents) == 1
