"""Scaling out: an MLflow server on PostgreSQL, sweeps on Ray and submitit, guards, an outage.

The tests marked `scaleout` start real services on 127.0.0.1 only, each in a
throwaway folder, and stop what they started (by PID; Ray's head by its own processes, never `ray stop`):
PostgreSQL (initdb + pg_ctl), `mlflow server` on it, a Ray head (`ray start`).
They need the extras `gdexp[ray,slurm,postgres]` and PostgreSQL's binaries;
without them they skip on a developer's machine (or deselect them: -m "not scaleout")
and fail in CI (CI=true), where .ci/run installs everything.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import types

import pytest
from mlflow import MlflowClient

from gdexp.tracking import content, guards, record, store
from gdexp.tracking import env as tracking_env
from gdexp.core.errors import ConfigError
from pg_server import free_port
from ray_head import RayHead

BIN = Path(sys.executable).parent
SERVER_START_S = 60
# A small sweep: 2 losses x 3 rates, every step logged (300 steps < curve_points).
SWEEP = ["-m", "loss=quadratic,booth", "optimizer.lr=0.001,0.01,0.1", "stopping.maxiter=300"]
SWEEP_RUNS = 6


def _need(what: str):
    """Skip on a developer's machine, fail in CI: CI must run every scale-out test."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the scale-out tests, but {what} (.ci/run installs it)")
    pytest.skip(f"{what}; pip install '.[ray,slurm,postgres]' and PostgreSQL (apt-get install postgresql)")


# --- services -------------------------------------------------------------------------------

class MlflowServer:
    """`mlflow server` on a backend store, 127.0.0.1, one worker, job execution off."""

    def __init__(self, backend: str, folder: Path):
        self.backend, self.folder, self.port = backend, folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> MlflowServer:
        (self.folder / "artifacts").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        env.pop("MLFLOW_TRACKING_URI", None)
        self.log = self.folder / "server.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "mlflow"), "server", "--backend-store-uri", self.backend,
                 "--artifacts-destination", str(self.folder / "artifacts"),
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # a wrong driver exits at once: check the PID, not only /health
                pytest.fail(f"mlflow server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"mlflow server gave no /health in {SERVER_START_S} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM its process group (uvicorn's worker too), SIGKILL what is left after 10 s."""
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                pass
        self.proc = None


@pytest.fixture
def server_on_postgres(postgres_template, tmp_path):
    """An MLflow server on a fresh PostgreSQL database (restartable: .stop(), .start()).

    The database is a copy of the session's migrated one (tests/conftest.py's postgres_template,
    the server tests/tracking's PostgreSQL tests use too): the server starts on a current schema
    instead of running MLflow's migrations first (~5 s a server on the 2-core machine)."""
    pg, template = postgres_template
    server = MlflowServer(pg.uri(pg.create(template)), tmp_path / "server").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 (tests/ray_head.py), auth off on both sides; only its own processes stopped after.

    For this module only: an idle Ray head's eight processes take ~7% of a core, which a session's
    fixture spent until the last test of the worker (~25 s of CPU taken from the suite)."""
    if not (BIN / "ray").exists():
        _need("the `ray` extra is missing")
    head = RayHead()
    started = head.start()
    if started.returncode:
        head.stop()
        pytest.fail(f"ray start failed:\n{started.stdout}\n{started.stderr}")
    yield head.address
    # Ray's GCS server and autoscaler monitor outlast SIGTERM by 15 s and more: a throwaway cluster
    # is not waited for (the full default grace was 10 s of every run's end), as `ray stop --force`
    head.stop(grace_s=1.0)


def _gdexp(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The installed `gdexp` command, as a user runs it."""
    full = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", RAY_AUTH_MODE="disabled",
                RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **(env or {}))
    full.pop("MLFLOW_TRACKING_URI", None)
    full.pop(tracking_env.PARENT_RUN, None)
    return subprocess.run([str(BIN / "gdexp"), *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)


# --- reading a store back -------------------------------------------------------------------

def _sweep(uri: str):
    cl = MlflowClient(uri)
    ids = [e.experiment_id for e in cl.search_experiments()]
    runs = cl.search_runs(ids, max_results=10000)
    parents = [r for r in runs if r.data.tags.get("gdexp.sweep") == "true"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return cl, parents, children


def _contents(uri: str) -> dict:
    """Each child run by name: status, params, gdexp tags, metrics, curves, artifact files."""
    cl, _, children = _sweep(uri)
    out = {}
    for r in children:
        rid = r.info.run_id
        with tempfile.TemporaryDirectory() as tmp:
            art = Path(cl.download_artifacts(rid, "", tmp))
            files = {"config.yaml": (art / "config.yaml").read_text(),
                     "result.json": json.loads((art / "result.json").read_text()),
                     # nan (a column evaluated at some steps only) as None: equal curves compare equal
                     "curve": {k: [None if pd.isna(v) else v for v in column] for k, column
                               in pd.read_parquet(art / "curve.parquet").to_dict("list").items()}}
        out[r.info.run_name] = {
            "status": r.info.status,
            "params": r.data.params,
            "tags": {k: v for k, v in r.data.tags.items() if k.startswith("gdexp.")},
            "metrics": r.data.metrics,
            "curves": {m: [(h.step, h.value) for h in sorted(cl.get_metric_history(rid, m), key=lambda h: h.step)]
                       for m in ("loss", "grad_norm")},
            **files,
        }
    return out


def _check_complete(uri: str) -> tuple:
    """Every run of SWEEP once, FINISHED, with its whole curve and tags; the parent closed."""
    cl, parents, children = _sweep(uri)
    assert len(parents) == 1, [p.info.run_name for p in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.metrics["runs"] == SWEEP_RUNS
    assert "gdexp.unrecorded" not in parent.data.tags
    hashes = [r.data.tags["gdexp.config_hash"] for r in children]
    assert len(children) == SWEEP_RUNS and len(set(hashes)) == SWEEP_RUNS  # each exactly once
    for r in children:
        assert r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert r.data.tags["gdexp.status"] in ("converged", "diverged", "max_iters")
        iterations = int(r.data.metrics["iterations"])
        history = cl.get_metric_history(r.info.run_id, "loss")
        assert sorted(h.step for h in history) == list(range(iterations + 1))  # the whole curve
    return cl, parent, children


@pytest.fixture(autouse=True)
def _http_retry_settings_restored():
    """gdexp sets MLflow's retry bounds in its process; a test's must not reach the next test."""
    saved = {k: os.environ.get(k) for k in tracking_env.HTTP_CLIENT_DEFAULTS}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# --- guards: no services needed ----------------------------------------------------------------

def test_tracking_server_needs_its_address(gdexp, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    code, out, err = gdexp("tracking=server", "loss=booth", "stopping.maxiter=5")
    assert code == 2 and "tracking.uri" in err and "http://HOST:PORT" in err


def test_a_server_that_does_not_answer_stops_the_sweep_before_any_run(gdexp, monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = gdexp(*SWEEP, "tracking=server", f"tracking.uri={url}")
    assert code == 2  # a store that cannot be used: refused input (gdexp.commands.exits.EXIT_INVALID_INPUT)
    lines = [line for line in err.splitlines() if line.startswith("gdexp: error:")]
    assert len(lines) == 1 and url in lines[0] and "does not answer" in lines[0]
    assert not list(tmp_path.glob("multirun/*/*/0"))  # no job ran


def test_sqlite_on_a_network_filesystem_is_refused(tmp_path):
    (tmp_path / "shared").mkdir()  # the mount point
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {tmp_path / 'shared'} nfs4 rw 0 0\n")
    guards.check_store_filesystem(f"sqlite:///{tmp_path / 'local' / 'mlflow.db'}", mounts=str(mounts))
    with pytest.raises(ConfigError, match="network filesystem \\(nfs4\\)"):
        guards.check_store_filesystem(f"sqlite:///{tmp_path / 'shared' / 'runs' / 'mlflow.db'}", mounts=str(mounts))
    guards.check_store_filesystem("http://127.0.0.1:5000", mounts=str(mounts))  # not a file


@pytest.mark.parametrize("launcher, refused", [
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}, True),
    ({"_target_": "hydra_plugins.gdexp_plugins.RayLauncher", "ray": {"init": {"address": "10.1.2.3:6379"}}}, True),
    ({"_target_": "hydra_plugins.gdexp_plugins.RayLauncher", "ray": {"init": {"address": "local"}}}, False),
    ({"_target_": "hydra_plugins.gdexp_plugins.RayLauncher", "ray": {"init": {"address": "127.0.0.1:6379"}}}, False),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}, False),
])
def test_sqlite_is_refused_when_jobs_run_on_other_machines(launcher, refused):
    from omegaconf import OmegaConf

    node = OmegaConf.create(launcher)
    if refused:
        with pytest.raises(ConfigError, match="use tracking=server"):
            guards.check_store_for_launcher("sqlite:////data/mlflow.db", node)
    else:
        guards.check_store_for_launcher("sqlite:////data/mlflow.db", node)
    guards.check_store_for_launcher("http://head:5000", node)  # a server is fine anywhere


def test_a_job_without_the_sweeps_environment_is_refused(monkeypatch):
    gdexp_sweeper = "hydra_plugins.gdexp_plugins.GridSweeper"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking_env.PARENT_RUN, raising=False)
    with pytest.raises(ConfigError, match="GDEXP_PARENT_RUN_ID and MLFLOW_TRACKING_URI"):
        guards.check_job_environment(None, gdexp_sweeper)
    monkeypatch.setenv(tracking_env.PARENT_RUN, "abc")
    with pytest.raises(ConfigError, match="did not get the sweep's MLFLOW_TRACKING_URI"):
        guards.check_job_environment("sqlite:///mlflow.db", gdexp_sweeper)
    guards.check_job_environment("sqlite:////abs/mlflow.db", gdexp_sweeper)
    guards.check_job_environment(None, "hydra._internal.core_plugins.basic_sweeper.BasicSweeper")


def test_jobs_become_one_task_per_run_of_jobs_that_descend_together(compose):
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from gdexp.hydra.paths import conf_dir
    from gdexp.hydra.launchers.groups import descent_groups

    master = compose(raw=True)
    GlobalHydra.instance().clear()
    jobs = [["loss=booth", f"optimizer.lr={lr}"] for lr in (0.1, 0.2, 0.3)]
    jobs += [["loss=quadratic", "optimizer.lr=0.1"], ["loss=booth", "optimizer.lr=0.4"]]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        launcher = types.SimpleNamespace()  # the composer is kept on it, made once
        assert descent_groups(launcher, loader, master, jobs, 10) == [(10, jobs[:3]), (13, jobs[3:4]), (14, jobs[4:])]
        composer = launcher.gdexp_composer
        assert descent_groups(launcher, loader, master, jobs, 10, jobs_per_task=2) == \
            [(10, jobs[:2]), (12, jobs[2:3]), (13, jobs[3:4]), (14, jobs[4:])]
        assert launcher.gdexp_composer is composer


def test_http_retries_are_bounded_unless_the_user_set_them(monkeypatch, tmp_path):
    for key in tracking_env.HTTP_CLIENT_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    store.client(f"sqlite:///{tmp_path / 'x.db'}")
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # a local store: nothing to bound
    store.client("http://127.0.0.1:5000")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "4"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"  # the user's value wins


@pytest.mark.parametrize("asked, num_gpus", [([], 0), (["hydra.launcher.ray.remote.num_gpus=1"], 1)])
def test_each_ray_task_asks_for_the_gpus_the_preset_names(gdexp, store, monkeypatch, asked, num_gpus):
    """hydra.launcher.ray.remote.num_gpus reaches ray.remote with the preset's num_cpus and the sweep's
    environment (Ray itself replaced by a stand-in that runs each task here: no GPU or cluster needed)."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher") if not os.environ.get("CI") else None
    import ray
    from hydra.core.singleton import Singleton

    import gdexp.hydra.launchers.ray as ray_launcher

    options = []

    def remote(**kwargs):
        options.append(kwargs)
        return lambda function: types.SimpleNamespace(remote=function)

    monkeypatch.setattr(ray_launcher, "start_ray", lambda init: None)
    monkeypatch.setattr(ray, "remote", remote)
    monkeypatch.setattr(ray, "get", lambda returns: returns)
    # A task here finds Hydra's state in place; restoring it, as a worker does, would make Hydra scan
    # its plugins again, re-executing their modules under the classes this process already holds.
    monkeypatch.setattr(Singleton, "set_state", staticmethod(lambda state: None))
    code, out, err = gdexp("-m", "loss=quadratic,booth", "optimizer.lr=0.01,0.1", "stopping.maxiter=20",
                           "hydra/launcher=ray", *asked)
    assert code == 0, err
    (kwargs,) = options  # one remote function, called once a task
    assert {k: v for k, v in kwargs.items() if k != "runtime_env"} == {"num_cpus": 1, "num_gpus": num_gpus}
    assert kwargs["runtime_env"]["env_vars"][tracking_env.TRACKING_URI] == store
    _, parents, children = _sweep(store)
    assert len(children) == 4 and parents[0].data.metrics["runs"] == 4


# --- real services ------------------------------------------------------------------------------

@pytest.mark.scaleout
def test_ray_sweep_against_a_server_on_postgres(ray_head, server_on_postgres, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher") if not os.environ.get("CI") else None
    url = server_on_postgres.url
    work = tmp_path / "work"
    work.mkdir()
    done = _gdexp(*SWEEP, "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head}",
                  "tracking=server", f"tracking.uri={url}", cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ray: 6 jobs as 2 task(s)" in done.stdout + done.stderr  # one task per vectorized batch
    assert "View run" not in done.stdout  # MLflow's line per run, off for gdexp
    cl, parent, children = _check_complete(url)
    sweep_dir = Path(parent.data.tags["gdexp.sweep_dir"])
    assert sweep_dir.is_absolute() and sorted(p.name for p in sweep_dir.iterdir() if p.name.isdigit()) \
        == [str(i) for i in range(SWEEP_RUNS)]
    assert not (work / "mlflow.db").exists()  # nothing went to a stray local store

    # Reading back through the server: load_runs, full curves, rerun, report.
    from gdexp.tracking.reader import load_curve, load_runs

    runs = load_runs(sweep=parent.info.run_id, tracking_uri=url)
    assert len(runs) == SWEEP_RUNS and set(runs["status"]) <= {"converged", "diverged", "max_iters"}
    row = runs.iloc[0]
    assert len(load_curve(row.run_id, tracking_uri=url)) == row.iterations + 1
    rerun = _gdexp("rerun", "--sweep", parent.info.run_id, "--tracking-uri", url, cwd=work)
    assert rerun.returncode == 0 and f"{SWEEP_RUNS} of {SWEEP_RUNS} runs identical" in rerun.stdout, rerun.stderr
    report = _gdexp("report", "--sweep", parent.info.run_id, "--tracking-uri", url,
                    "--out", str(tmp_path / "report"), cwd=work)
    assert report.returncode == 0, report.stderr
    assert all(name in (tmp_path / "report" / "report.md").read_text() for name in runs["run_name"])
    assert "report/report.html" in {f.path for f in cl.list_artifacts(parent.info.run_id, "report")}


@pytest.mark.scaleout
def test_a_torch_sweep_on_ray_records_what_it_records_here(ray_head, tmp_path):
    """loss=torch with loss.device=auto on the Ray head: each task descends its batch on the device
    Ray gave it (the CPU here), importing the user's net from the start folder, and records exactly
    what the same sweep records on the default launcher."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher") if not os.environ.get("CI") else None
    pytest.importorskip("torch", reason="loss=torch needs the torch extra (CI installs the CPU wheel)")
    import hashlib
    import textwrap

    from test_torch_module import NET

    (tmp_path / "mynet").mkdir()
    (tmp_path / "mynet" / "__init__.py").write_text("")
    (tmp_path / "mynet" / "net.py").write_text(textwrap.dedent(NET))
    sweep = ["-m", "loss=torch", "loss.model=mynet.net.reg_model", "loss.data=mynet.net.regression",
             "loss.criterion=mse", "loss.dtype=float64", "loss.device=auto",
             "optimizer.lr=0.003,0.01,0.03,0.1,0.3,1", "stopping.maxiter=50"]
    uris, said = {}, {}
    # the sweep's one vectorized batch split into two tasks of 3 runs; here, one batch of 6
    on_ray = ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head}", "hydra.launcher.jobs_per_task=3"]
    for where, launcher in (("ray", on_ray), ("here", [])):
        uris[where] = f"sqlite:///{tmp_path / where}.db"
        done = _gdexp(*sweep, *launcher, f"tracking.uri={uris[where]}", f"hydra.sweep.dir={tmp_path / where}",
                      cwd=tmp_path)
        said[where] = done.stdout + done.stderr
        assert done.returncode == 0, said[where]
    assert "Ray: 6 jobs as 2 task(s)" in said["ray"], said["ray"]
    on_ray, here = (_without_store(_contents(uris[w])) for w in ("ray", "here"))
    assert len(on_ray) == 6 and on_ray == here
    sha = hashlib.sha256((tmp_path / "mynet" / "net.py").read_bytes()).hexdigest()
    assert {r["tags"]["gdexp.source_sha256"] for r in on_ray.values()} == {sha}
    assert {r["params"]["loss.device"] for r in on_ray.values()} == {"auto"}
    assert sorted(r["tags"]["gdexp.status"] for r in on_ray.values()) == ["diverged"] + ["max_iters"] * 5


@pytest.mark.scaleout
@pytest.mark.parametrize("batched, tasks", [("true", 2), ("false", SWEEP_RUNS)])
def test_submitit_local_sweep_on_a_fresh_sqlite_store(tmp_path, batched, tasks):
    """gdexp's one process per vectorized batch, and the plugin's one per job (6 at once on a
    fresh SQLite file: gdexp creates it, and the parent, before any of them starts)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher") if not os.environ.get("CI") else None
    done = _gdexp(*SWEEP, "hydra/launcher=submitit_local", f"hydra.launcher.batched={batched}",
                  "hydra.launcher.timeout_min=5", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    cl, parent, children = _check_complete(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Each task ran in its own process, under submitit.
    assert len(list(Path(parent.data.tags["gdexp.sweep_dir"]).glob(".submitit/*/*_result.pkl"))) == tasks


@pytest.mark.scaleout
def test_server_stopped_mid_sweep_loses_nothing_and_resume_completes_it(gdexp, server_on_postgres,
                                                                       tmp_path, monkeypatch):
    """The server stops while run 4 of 6 is being recorded (its curves sent, its artifacts
    not); it comes back; `gdexp resume`.

    Afterwards the store holds exactly what an uninterrupted sweep writes (checked
    against one on SQLite: run 4's curve points are not there twice), runs 1-3 are
    what they were before the outage, and the parent is closed.
    """
    server = server_on_postgres
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    # A short retry bound, to keep the test short (gdexp's own default retries for ~14 s).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    sweep_dir = tmp_path / "sweep"

    started, before, written = [], {}, []
    real_start_run, real_write_artifacts = record.start_run, content.write_artifacts

    def start_run(*args, **kwargs):
        if len(started) == 3:
            before.update(_contents(server.url))
        info = real_start_run(*args, **kwargs)
        started.append(info.run_id)
        return info

    def write_artifacts(*args, **kwargs):
        written.append(args[0])
        if len(written) == 4:  # run 4's params, curves and tags are in; its artifacts are next
            server.stop()
        return real_write_artifacts(*args, **kwargs)

    monkeypatch.setattr(record, "start_run", start_run)
    monkeypatch.setattr(content, "write_artifacts", write_artifacts)
    code, out, err = gdexp(*SWEEP, "tracking=server", f"tracking.uri={server.url}",
                           f"hydra.sweep.dir={sweep_dir}")
    monkeypatch.setattr(record, "start_run", real_start_run)
    monkeypatch.setattr(content, "write_artifacts", real_write_artifacts)
    assert code == 1, err
    assert f"3 runs could not be recorded in {server.url}" in err and f"gdexp resume {sweep_dir}" in err, err
    kept = sorted(sweep_dir.glob("gdexp-unrecorded/*/run.json"))
    assert len(kept) == 3 and (sweep_dir / "gdexp-unrecorded" / "parent.json").exists()
    assert sum(json.loads(p.read_text())["run_id"] == started[3] for p in kept) == 1  # run 4: its id kept
    assert len(before) == 3

    server.start()  # same database, same port
    cl, parents, children = _sweep(server.url)
    assert parents[0].info.status == "RUNNING" and len(children) == 4  # run 4 created, never finished
    run4 = cl.get_run(started[3])
    assert run4.info.status == "RUNNING" and cl.get_metric_history(started[3], "loss")  # its curve is in
    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0 and "recorded 3 runs" in out, err
    _check_complete(server.url)
    after = _contents(server.url)
    assert {name: after[name] for name in before} == before  # recorded before the outage: intact

    code, out, err = gdexp("resume", str(sweep_dir))  # twice: nothing recorded twice
    assert code == 0 and "recorded 0 runs" in out
    _check_complete(server.url)

    # The same sweep without an outage, on SQLite: the same runs, bit for bit.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'ref.db'}")
    assert gdexp(*SWEEP, f"hydra.sweep.dir={tmp_path / 'ref'}")[0] == 0
    reference = _contents(f"sqlite:///{tmp_path / 'ref.db'}")
    assert _without_store(after) == _without_store(reference)


def _without_store(runs: dict) -> dict:
    """Run contents less where they were stored (tracking.uri, in params and config.yaml)."""
    return {name: {**r, "params": {k: v for k, v in r["params"].items() if k != "tracking.uri"},
                   "config.yaml": re.sub(r"(?m)^  uri: .*$", "  uri: null", r["config.yaml"])}
            for name, r in runs.items()}


def test_the_ray_head_of_the_tests_stops_only_its_own_processes(tmp_path):
    """Not `ray stop --force` (it kills every Ray process of the user): the processes naming the
    head's folder or port, and their children, and nothing else."""
    from ray_head import RayHead, _cluster_pids

    head = RayHead()
    shell = f"sleep 300 & wait  # {head.temp}"
    ours = subprocess.Popen(["bash", "-c", shell])
    client = subprocess.Popen(["bash", "-c", f"sleep 300 & wait  # --address=127.0.0.1:{head.port}"])
    other = subprocess.Popen(["bash", "-c", f"sleep 300 & wait  # {head.temp}-other 127.0.0.1:{head.port}0"])
    try:
        deadline = time.monotonic() + 10
        while len(_cluster_pids(str(head.temp), head.port)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)  # the shells' sleeps started
        assert head.stop(grace_s=5) == 4  # two shells and their sleeps
        ours.wait(timeout=10), client.wait(timeout=10)  # ended (TimeoutExpired if not)
        assert other.poll() is None
    finally:
        for p in (ours, client, other):
            p.kill()
            p.wait()
