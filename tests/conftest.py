"""Shared fixtures: a real SQLite MLflow store under tmp_path, configs composed in-process."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite tracking URI, exported as MLFLOW_TRACKING_URI like a user would."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("GDEXP_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def compose():
    """compose(*overrides) -> the resolved config dict a job would get."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from gdexp.hydra.task import to_config
    from gdexp.hydra.schema import register_configs
    from gdexp.hydra.paths import conf_dir
    from gdexp.hydra.named_sweeps import register_sweeps

    register_configs()
    register_sweeps()

    def _compose(*overrides: str, raw: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=raw)
        return cfg if raw else to_config(cfg)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def gdexp(store, capsys):
    """gdexp(*args) runs the real `gdexp` command in-process: (exit code, stdout, stderr).

    In-process (not a subprocess) to skip ~3 s of imports per call; the few
    tests that must prove the installed console script works use subprocess.
    """
    from cli_runner import run_cli

    def _run(*args: str):
        capsys.readouterr()
        code = run_cli(*args)
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
