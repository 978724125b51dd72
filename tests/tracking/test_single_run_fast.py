"""A single run written below MLflow's API (gdexp.tracking.record._write_run_fast), and a sweep's
runs and parent run (gdexp.tracking.parent_run): the same runs as MLflow's client writes, RUNNING while it descends, FAILED or KILLED with its params, and no MLflow,
SQLAlchemy or pandas imported on the way (issue 21: a single run in at most 1.5 s)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

import gdexp.hydra.task as task_module
from gdexp.tracking import store as store_module
from gdexp.tracking.fast import fence
from gdexp.tracking.fast.records import artifact_uri

ARGS = ("loss=quadratic", "loss.eigenvalues=[1,10]", "optimizer=momentum", "optimizer.lr=0.02",
        "stopping.maxiter=300", "tracking.curve_points=50")
# A run with a data set: its dataset input (the UI's Dataset column) is written too.
DATA_ARGS = ("loss=linear_regression", "loss.dataset=diabetes", "optimizer.lr=0.05", "stopping.maxiter=200",
             "tracking.curve_points=50")


@pytest.fixture
def template(tmp_path_factory):
    """A migrated empty store kept for copies (gdexp.tracking.store.fresh_sqlite_store), as after
    any first use of MLflow on the machine: a new store is then written without MLflow."""
    folder = tmp_path_factory.mktemp("first")
    store_module.client(f"sqlite:///{folder / 'mlflow.db'}")
    assert store_module._template_path().is_file()


def _client_path(monkeypatch):
    """Force MLflow's client for every store and run (a single run's path before issue 21, still
    the one for servers; for a sweep's runs, the path where the fence says no)."""
    import gdexp.tracking.bulk as bulk

    monkeypatch.setattr(store_module.Store, "_find_by_sql", lambda self: None)
    monkeypatch.setattr(bulk, "_fast", lambda store: False)


def _run(uri: str):
    cl = MlflowClient(uri)
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    assert len(runs) == 1
    return cl, runs[0]


def _files(cl, run) -> dict:
    folder = Path(cl.download_artifacts(run.info.run_id, ""))
    curve = pd.read_parquet(folder / "curve.parquet")
    return {"names": sorted(p.name for p in folder.iterdir()), "config": (folder / "config.yaml").read_text(),
            "result": json.loads((folder / "result.json").read_text()), "curve": curve}


def _inputs(cl, run) -> list:
    """The run's dataset inputs as MLflow's client reads them (ids left out)."""
    return [(d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.source, d.dataset.schema,
             d.dataset.profile, [(t.key, t.value) for t in d.tags]) for d in run.inputs.dataset_inputs]


SWEEP_ARGS = ("-m", "loss=linear_regression", "loss.dataset=diabetes", "optimizer.lr=0.01,0.02",
              "stopping.maxiter=200")


@pytest.mark.parametrize("args", [ARGS, DATA_ARGS, SWEEP_ARGS],
                         ids=["single", "single with data", "sweep with data"])
def test_a_run_below_the_api_is_the_run_mlflows_client_writes(gdexp, tmp_path, monkeypatch, template, args):
    written = {}
    for way in ("client", "fast"):
        folder = tmp_path / way
        folder.mkdir()
        monkeypatch.chdir(folder)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        with monkeypatch.context() as m:
            if way == "client":
                _client_path(m)
            store_module.forget_stores()
            code, out, err = gdexp(*args)
        assert code == 0, err
        if "-m" in args:  # the sweep's runs, compared one by one, and its parent run
            cl = MlflowClient(uri)
            runs = sorted(cl.search_runs([e.experiment_id for e in cl.search_experiments()],
                                         "tags.mlflow.parentRunId != ''"), key=lambda r: r.info.run_name)
            assert len(runs) == 2
            # Left out: the tags that name the sweep (its parent run), which differ by design.
            written[way] = [(r.data.params, {k: v for k, v in r.data.tags.items() if k != "mlflow.parentRunId"},
                             r.data.metrics, _inputs(cl, cl.get_run(r.info.run_id)), r.info.status) for r in runs]
            (parent,) = cl.search_runs([runs[0].info.experiment_id], "tags.`gdexp.sweep` = 'true'")
            folder = Path(cl.download_artifacts(parent.info.run_id, ""))
            info = parent.info

            def same(text, way=way, ids={r.info.run_id: f"RUN{i}" for i, r in enumerate(runs)}):
                """The folders (way, the sweep's time-stamped one) and the runs' ids named alike."""
                for run_id, name in {**ids, parent.info.run_id: "PARENT"}.items():
                    text = text.replace(run_id, name)
                return re.sub(r"multirun/[\w/-]+", "multirun/DIR", text.replace(way, "WAY"))

            written[way].append(({k: same(v) for k, v in parent.data.tags.items()}, parent.data.params,
                                 parent.data.metrics, info.status, info.run_name, info.user_id, info.lifecycle_stage,
                                 same(info.artifact_uri),
                                 info.start_time <= info.end_time,
                                 {p.name: same(p.read_text()) for p in sorted(folder.iterdir())}, same(out)))
            continue
        cl, run = _run(uri)
        history = {k: [(p.step, p.value) for p in sorted(cl.get_metric_history(run.info.run_id, k),
                                                         key=lambda p: p.step)]
                   for k in run.data.metrics}
        experiment = cl.get_experiment(run.info.experiment_id)
        written[way] = {"run": run, "history": history, "files": _files(cl, run), "out": out,
                        "inputs": _inputs(cl, cl.get_run(run.info.run_id)),
                        "experiment": (experiment.name, experiment.artifact_location.replace(way, "WAY"),
                                       experiment.lifecycle_stage, experiment.tags, experiment.experiment_id)}
    client, fast = written["client"], written["fast"]
    if "-m" in args:
        assert fast[-1] == client[-1]  # the parent: tags, metrics, status, times, files, what the sweep said
        assert {k: fast[-1][2][k] for k in ("runs", "diverged", "failed")} == {"runs": 2, "diverged": 0, "failed": 0}
        assert sorted(fast[-1][-2]) == ["answers.csv", "summary.csv"]
        assert fast == client and fast[0][3] and fast[0][3][0][0] == "diabetes"
        return
    assert fast["inputs"] == client["inputs"] and bool(fast["inputs"]) == ("loss.dataset=diabetes" in args)
    a, b = client["run"], fast["run"]
    assert b.info.status == a.info.status == "FINISHED"
    assert b.info.run_name == a.info.run_name and b.info.user_id == a.info.user_id
    assert b.info.lifecycle_stage == a.info.lifecycle_stage == "active"
    assert b.info.start_time <= b.info.end_time
    assert b.data.params == a.data.params and len(a.data.params) > 10
    assert b.data.tags == a.data.tags
    assert b.data.metrics == a.data.metrics
    assert fast["history"] == client["history"] and len(client["history"]["loss"]) >= 50
    assert fast["experiment"] == client["experiment"]
    assert fast["files"]["names"] == client["files"]["names"] == ["config.yaml", "curve.parquet", "result.json"]
    assert fast["files"]["config"] == client["files"]["config"] and fast["files"]["result"] == client["files"]["result"]
    pd.testing.assert_frame_equal(fast["files"]["curve"], client["files"]["curve"])
    assert fast["out"].replace("fast", "WAY").replace(b.info.run_id, "ID") == \
        client["out"].replace("client", "WAY").replace(a.info.run_id, "ID")


def test_a_single_run_is_running_with_its_params_while_it_descends(gdexp, store, monkeypatch, template):
    seen = {}
    real = task_module.execute

    def execute(specs, **kwargs):
        cl = MlflowClient(store)
        (run,) = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
        seen.update(status=run.info.status, params=dict(run.data.params), tags=dict(run.data.tags),
                    metrics=dict(run.data.metrics))
        return real(specs, **kwargs)

    monkeypatch.setattr(task_module, "execute", execute)
    code, _, err = gdexp(*ARGS)
    assert code == 0, err
    cl, run = _run(store)
    assert seen["status"] == "RUNNING" and seen["params"] == run.data.params and seen["metrics"] == {}
    assert "gdexp.config_hash" in seen["tags"] and "gdexp.status" not in seen["tags"]
    assert run.info.status == "FINISHED" and run.data.tags["gdexp.status"] == "max_iters"


@pytest.mark.parametrize("error, status", [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_single_run_that_stops_mid_descent_keeps_its_params(gdexp, store, monkeypatch, template, error, status):
    def execute(specs, **kwargs):
        raise error

    monkeypatch.setattr(task_module, "execute", execute)
    if status == "FAILED":
        with pytest.raises(RuntimeError, match="boom"):  # a bug in the descent keeps its traceback
            gdexp(*ARGS)
    else:
        got, _, err = gdexp(*ARGS)
        assert got == 130, err
    cl, run = _run(store)
    assert run.info.status == status and run.info.end_time >= run.info.start_time
    assert run.data.params["optimizer.lr"] == "0.02" and run.data.metrics == {}
    if status == "FAILED":
        assert run.data.tags["gdexp.error"] == "RuntimeError: boom"
    else:
        assert "interrupted" in err and "KILLED" in err


def test_a_single_run_into_an_existing_store_imports_no_mlflow(store, tmp_path, template):
    """The contract behind the 1.5 s: the run's whole record without MLflow, SQLAlchemy or pandas
    (their imports were ~2.5 s of the ~3 s run). The second run is checked: the first made the store."""
    script = ("import sys\nfrom gdexp.commands.main import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
              "print(sorted(m for m in ('mlflow', 'sqlalchemy', 'pandas', 'requests') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(task_module.__file__).parents[2])}
    for lr in ("0.01", "0.02"):
        done = subprocess.run([sys.executable, "-c", script, "loss=booth", f"optimizer.lr={lr}",
                               "stopping.maxiter=100"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]", done.stdout
    cl = MlflowClient(store)
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()])
    assert sorted(r.data.params["optimizer.lr"] for r in runs) == ["0.01", "0.02"]
    assert {r.info.status for r in runs} == {"FINISHED"}


# --- MLflow's rules, restated where the fast path needs no MLflow --------------------------------

NAMES = ["loss", "optimizer.lr", "a/b", "x y", "t:1", "gdexp.status", "é", "a" * 250, "a" * 251, "", ".", "..",
         "./a", "a/./b", "a/../b", "/abs", "a//b", "a/", "bad!", "tab\t", "new\nline", "a$", "-", "_", "0",
         "mlflow.runName", "ünïcode/名前"]


@pytest.mark.parametrize("name", NAMES)
def test_a_plain_name_is_one_mlflow_takes_unchanged(name):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_metric, _validate_param, _validate_tag

    try:
        param = _validate_param(name, "v")
        tag = _validate_tag(name, "v")
        _validate_metric(name, 1.0, 0, 0)
        mlflow_takes = param.key == tag.key == name
    except MlflowException:
        mlflow_takes = False
    plain = fence.plain_name(name)
    assert plain == mlflow_takes or (not plain and os.name == "nt"), name
    if plain:
        assert fence.validate_param(name, "v", "p") == (name, "v") == fence.validate_tag(name, "v", "t")


def test_values_past_mlflows_limits_go_to_its_own_validators():
    long_param, long_tag = "x" * (fence.MAX_PARAM_LENGTH + 1), "y" * (fence.MAX_TAG_LENGTH + 1)
    assert fence.validate_param("k", long_param, "p") == ("k", long_param[:fence.MAX_PARAM_LENGTH])
    assert fence.validate_tag("k", long_tag, "t") == ("k", long_tag[:fence.MAX_TAG_LENGTH])


@pytest.mark.parametrize("location", ["file:///data/mlartifacts/gdexp", "/data/mlartifacts/gdexp",
                                      "file:///data/ml%20artifacts/x", "file:///data/x/", "s3://bucket/x",
                                      "file:///data/x?y=1", "relative/x", "file:///a_b-c.d/e"])
def test_a_runs_artifact_uri_is_mlflows(location):
    from mlflow.utils.uri import append_to_uri_path

    run_id = "0123456789abcdef0123456789abcdef"
    assert artifact_uri(location, run_id) == append_to_uri_path(location, run_id, "artifacts")
