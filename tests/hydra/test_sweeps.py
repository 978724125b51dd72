"""Sweeps: clean grids, named sweeps from anywhere, batched == one at a time, joblib."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from gdexp.core.errors import ConfigError
from gdexp.hydra.compose import JobComposer
from gdexp.hydra.task import to_config
from gdexp.hydra.named_sweeps import available, describe


def runs_of(uri):
    cl = MlflowClient(uri)
    runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()], max_results=10000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if r.data.tags.get("gdexp.sweep") == "true"]
    return cl, children, parents


def test_logspace_on_the_command_line_gives_clean_values(gdexp, store):
    code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=logspace(1e-4,1,13)", "stopping.maxiter=20")
    assert code == 0, err
    _, children, parents = runs_of(store)
    lrs = sorted(r.data.params["optimizer.lr"] for r in children)
    assert len(lrs) == 13 and len(parents) == 1
    assert "0.001" in lrs and "0.01" in lrs and "1.0" in lrs
    assert all(len(v.replace("e-0", "")) <= 17 for v in lrs)  # no 0.0010000000000000002
    names = {r.info.run_name for r in children}
    assert "booth-gd-lr=0.001" in names and "booth-gd-lr=0.000215443" in names
    assert parents[0].data.tags["gdexp.command"] == "gdexp -m loss=booth 'optimizer.lr=logspace(1e-4,1,13)' stopping.maxiter=20"


def test_float_range_excludes_its_stop_and_has_no_float_noise(gdexp, store):
    code, _, err = gdexp("-m", "loss=booth", "optimizer.lr=range(0.01,0.04,0.01)", "stopping.maxiter=5")
    assert code == 0, err
    _, children, _ = runs_of(store)
    assert sorted(r.data.params["optimizer.lr"] for r in children) == ["0.01", "0.02", "0.03"]


def test_every_named_sweep_is_listed_and_composes(compose):
    names = available()
    assert {"lr_grid", "lr_by_optimizer", "conditioning"} <= set(names)
    for name, line in describe():
        assert line and not line.startswith("@")
        cfg = compose(f"+sweep={name}", raw=True)
        # what it sweeps: a grid, an Optuna space, or lr_find's and lr_range_test's own optimizer.lr
        sweeper = cfg.hydra.sweeper
        assert cfg.hydra.mode.name == "MULTIRUN", name
        assert sweeper.params or sweeper.get("search") or sweeper._target_.endswith(
            ("LrFindSweeper", "LrRangeTestSweeper")), name
    lr_grid = compose("+sweep=lr_grid", raw=True).hydra.sweeper.params
    assert lr_grid["optimizer.lr"] == "logspace(1e-4,1,13)"
    assert lr_grid["loss"] == "quadratic,rosenbrock,linear_regression"


def test_unknown_sweep_is_an_error_listing_the_sweeps(gdexp, store, tmp_path):
    code, out, err = gdexp("+sweep=nope")
    assert code != 0
    assert "nope" in err and "lr_grid" in err and "conditioning" in err
    assert not (tmp_path / "mlflow.db").exists() or runs_of(store)[1] == []


def test_a_users_sweep_is_read_again_when_edited_and_gone_in_a_folder_without_it(gdexp, store, tmp_path,
                                                                                   monkeypatch):
    """In one process (a notebook's gdexp.sweep, the in-process command): ./sweeps/ is read once
    and again only when a file changed; another folder's sweeps are not selectable from here."""
    mine = tmp_path / "sweeps" / "mine.yaml"
    mine.parent.mkdir()

    def write(lrs: str):
        mine.write_text(f"# @package _global_\nhydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n"
                        f"      optimizer.lr: {lrs}\nstopping:\n  maxiter: 5\n")

    def lrs_of_last_sweep() -> list[str]:
        _, children, parents = runs_of(store)
        last = max(parents, key=lambda p: p.info.start_time).info.run_id
        return sorted(r.data.params["optimizer.lr"] for r in children if r.data.tags["mlflow.parentRunId"] == last)

    write("0.01,0.02")
    assert gdexp("+sweep=mine", "loss=booth")[0] == 0
    assert lrs_of_last_sweep() == ["0.01", "0.02"]
    write("0.01,0.02,0.03")  # edited: the same name, a new grid
    assert gdexp("+sweep=mine", "loss=booth")[0] == 0
    assert lrs_of_last_sweep() == ["0.01", "0.02", "0.03"]
    stat = mine.stat()
    write("0.01,0.02,0.04")  # the same size, its old modification time put back (cp -p, rsync -t)
    os.utime(mine, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert gdexp("+sweep=mine", "loss=booth")[0] == 0
    assert lrs_of_last_sweep() == ["0.01", "0.02", "0.04"]
    broken = mine.with_name("broken.yaml")
    broken.write_text("hydra: [unclosed\n")  # a file that does not parse, then removed
    code, _, err = gdexp("+sweep=mine", "loss=booth")
    assert code == 2 and err.count("\n") == 1 and "broken.yaml" in err and "Traceback" not in err, err
    broken.unlink()
    assert gdexp("+sweep=lr_grid", "stopping.maxiter=5")[0] == 0  # every sweep selectable again
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = gdexp("+sweep=mine", "loss=booth")
    assert code == 2 and err.count("\n") == 1 and "mine" in err and "lr_grid" in err, err


def test_a_bad_value_anywhere_in_the_grid_fails_before_any_run(gdexp, store, tmp_path):
    code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,-0.1,0.1")
    assert code != 0 and "optimizer.lr=-0.1" in err and "job #1" in err
    if (tmp_path / "mlflow.db").exists():
        cl = MlflowClient(store)
        assert cl.search_runs([e.experiment_id for e in cl.search_experiments()]) == []


def test_fast_composition_equals_hydra_full_compose(compose):
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from gdexp.hydra.paths import conf_dir

    master = compose("+sweep=lr_grid", raw=True)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        composer = JobComposer(loader, master)
        jobs = [["loss=quadratic", "optimizer.lr=0.001", "loss.eigenvalues=[1,2]"],
                ["loss=quadratic", "optimizer.lr=0.1", "stopping.maxiter=7"],
                ["loss=linear_regression", "optimizer.lr=1e-05", "init=[1.0,2.0]"],
                ["loss=rosenbrock", "optimizer=adam", "optimizer.lr=0.5", "optimizer.amsgrad=true"]]
        for num, overrides in enumerate(jobs):
            full = composer.full_config(num, overrides)
            fast = composer.job(num, overrides)
            expected = to_config(full)
            assert fast.config == expected
            assert fast.hydra["overrides"]["task"] == list(full.hydra.overrides.task)
            assert fast.hydra["job"]["override_dirname"] == full.hydra.job.override_dirname
        with pytest.raises(ConfigError, match="optimizer.lr='abc': must be a number"):
            composer.spec(["optimizer.lr=abc"])


def _store_contents(uri):
    cl, children, parents = runs_of(uri)
    out = {}
    for r in children:
        rid = r.info.run_id
        art = Path(cl.download_artifacts(rid, ""))
        out[r.info.run_name] = {
            "status": r.info.status,
            "params": r.data.params,
            "tags": {k: v for k, v in r.data.tags.items() if k not in ("mlflow.parentRunId", "mlflow.log-model.history")},
            "metrics": r.data.metrics,
            "histories": {m: [(h.step, h.value) for h in sorted(cl.get_metric_history(rid, m), key=lambda h: h.step)]
                          for m in ("loss", "grad_norm")},
            "config.yaml": (art / "config.yaml").read_text(),
            "result.json": json.loads((art / "result.json").read_text()),
            "curve": pd.read_parquet(art / "curve.parquet"),
        }
    return out, [p.data.metrics for p in parents]


def _job_folders(root: Path):
    out = {}
    for job in sorted(p for p in root.rglob(".hydra")):
        hydra = yaml.safe_load((job / "hydra.yaml").read_text())["hydra"]
        for volatile in ("launcher", "sweep"):
            hydra.pop(volatile)
        hydra["runtime"].pop("output_dir")
        hydra["runtime"]["choices"].pop("hydra/launcher")
        hydra["overrides"]["hydra"] = [o for o in hydra["overrides"]["hydra"] if "launcher" not in o]
        out[job.parent.name] = {
            "config.yaml": (job / "config.yaml").read_text(),
            "overrides.yaml": (job / "overrides.yaml").read_text(),
            "hydra": hydra,
            "log": sorted(p.name for p in job.parent.glob("*.log")),
        }
    return out


def test_batched_launcher_records_exactly_what_one_at_a_time_jobs_do(gdexp, tmp_path, monkeypatch):
    args = ["-m", "loss=quadratic,rosenbrock", "optimizer=adam", "optimizer.lr=0.001,0.03,0.3",
            "stopping.maxiter=300", "tracking.curve_points=50"]
    stores = {}
    for launcher in ("basic", "gdexp"):
        uri = f"sqlite:///{tmp_path / launcher / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        code, out, err = gdexp(*args, f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path / launcher / 'jobs'}")
        assert code == 0, err
        stores[launcher] = (_store_contents(uri), _job_folders(tmp_path / launcher / "jobs"))
    (basic, basic_parent), basic_jobs = stores["basic"]
    (batched, batched_parent), batched_jobs = stores["gdexp"]
    assert sorted(basic) == sorted(batched) and len(basic) == 6
    assert basic_parent == batched_parent
    for name in basic:
        a, b = basic[name], batched[name]
        for key in ("status", "params", "tags", "metrics", "histories", "config.yaml", "result.json"):
            assert a[key] == b[key], (name, key)
        pd.testing.assert_frame_equal(a["curve"], b["curve"])
    assert sorted(basic_jobs) == sorted(batched_jobs) == [str(i) for i in range(6)]
    assert basic_jobs == batched_jobs


def test_joblib_launcher_on_a_fresh_store_loses_and_duplicates_nothing(gdexp, store, tmp_path):
    lrs = [f"{v:g}" for v in np.logspace(-4, -1, 6)]
    code, out, err = gdexp("-m", "loss=booth", f"optimizer.lr={','.join(lrs)}", "stopping.maxiter=100",
                           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert code == 0, err
    _, children, parents = runs_of(store)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.params["optimizer.lr"] for r in children) == sorted(str(float(v)) for v in lrs)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.info.status for r in children} == {"FINISHED"}
    assert parents[0].data.metrics["runs"] == 6


def test_named_sweep_from_another_folder_with_the_installed_command(tmp_path):
    exe = Path(sys.executable).with_name("gdexp")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([str(exe), "+sweep=conditioning", "optimizer.lr=0.5,2.5", "stopping.maxiter=3000"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _, children, parents = runs_of(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(children) == 10 and parents[0].data.tags["gdexp.sweep_name"] == "conditioning"
    statuses = {(json.loads(r.data.params["loss.eigenvalues"])[0], r.data.params["optimizer.lr"]): r.data.tags["gdexp.status"]
                for r in children}
    assert all(s == "diverged" for (k, lr), s in statuses.items() if lr == "2.5")
    assert statuses[(1.0, "0.5")] == "converged"


def test_job_files_spliced_from_a_template_equal_full_dumps(compose, tmp_path):
    """A sweep's job files come from a checked template with each job's values spliced in:
    byte for byte what a full dump gives, for scalars of every kind, and a full dump where
    the values cannot be spliced (lists, long strings) or the config interpolates."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from gdexp.hydra.launchers.jobfiles import JobFiles, dump
    from gdexp.hydra.paths import conf_dir

    master = compose("loss=quadratic", f"hydra.sweep.dir={tmp_path}", raw=True)
    GlobalHydra.instance().clear()
    values = ["0.001", "1e-05", "true", "'1.5'", "abc", "'a: b'", "null", "[1,2]", "'" + "x" * 90 + "'"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        comp = JobComposer(GlobalHydra.instance().config_loader(), master)
        files = JobFiles()
        for num, value in enumerate(values):
            job = comp.job(num, ["loss=quadratic", f"tracking.experiment={value}", f"optimizer.lr=0.{num + 1}"])
            folder = tmp_path / str(num)
            files.write(folder, job.config, job.hydra, comp.changed(job.overrides), comp.selection(job.overrides))
            assert (folder / "config.yaml").read_text() == dump(job.config)
            assert (folder / "hydra.yaml").read_text() == dump({"hydra": job.hydra})
            assert (folder / "overrides.yaml").read_text() == dump(list(job.hydra["overrides"]["task"]))
    assert any(t is not None for t in files._templates.values())  # templates were used, not only full dumps


def test_job_files_template_keeps_a_common_list_and_long_values(compose, tmp_path):
    """A list value every job shares (init=[...]) stays in the template, and values too long for
    the 60-character rule but without spaces (override_dirname, a deep output folder) are spliced:
    byte for byte the full dumps, from templates."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from gdexp.hydra.launchers.jobfiles import JobFiles, dump
    from gdexp.hydra.paths import conf_dir

    deep = tmp_path / ("d" * 70)
    master = compose("loss=rosenbrock", f"hydra.sweep.dir={deep}", raw=True)
    GlobalHydra.instance().clear()
    inits = ["[-1.5,2.0]"] * 3 + ["[-1.5,-0.0]", "[-1.5,0.0]", "[1,2]", "[1.0,2.0]"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        comp = JobComposer(GlobalHydra.instance().config_loader(), master)
        files = JobFiles()
        for num, init in enumerate(inits):
            job = comp.job(num, ["loss=rosenbrock", f"init={init}", "stopping.maxiter=10000",
                                 f"optimizer.lr=0.000{num + 1}1234567891"])
            folder = deep / str(num)
            files.write(folder, job.config, job.hydra, comp.changed(job.overrides), comp.selection(job.overrides))
            assert (folder / "config.yaml").read_text() == dump(job.config)
            assert (folder / "hydra.yaml").read_text() == dump({"hydra": job.hydra})
            assert (folder / "overrides.yaml").read_text() == dump(list(job.hydra["overrides"]["task"]))
    used = {key[0] for key, t in files._templates.items() if t is not None}
    assert used == {"config", "hydra", "overrides"}
    assert sum(key[0] == "config" for key in files._templates) == 5  # one per distinct init, typed


def test_composer_float_lines_parse_as_hydra_parses_them(compose, tmp_path):
    """Swept float values reuse an earlier line's parsed override: each equals Hydra's own parse
    (value, type, key, input line), whatever the literal's form; other forms are parsed by Hydra."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gdexp.hydra.paths import conf_dir

    master = compose("loss=quadratic", f"hydra.sweep.dir={tmp_path}", raw=True)
    GlobalHydra.instance().clear()
    values = ["1e-05", "0.001", "1.0069e-05", "-0.0", "+1.5", "1.5E+3", "1e400", "12", "1.", ".5", "1_0.5",
              "inf", "00.5", "0.1 ", "abc", "0.000125892541179", "3.14159265358979312", "-2e-308"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        comp = JobComposer(loader, master)
        hydra = OverridesParser.create(config_loader=loader)
        for key in ("optimizer.lr", "+extra.x", "stopping.tol"):
            for value in values:
                line = f"{key}={value}"
                (ours,), (theirs,) = comp.parse([line]), hydra.parse_overrides([line])
                assert ours == theirs and repr(ours.value()) == repr(theirs.value()), line
        assert comp._floats["optimizer.lr"][0] is not None  # the shortcut was taken
