"""Shared fixtures: a real SQLite MLflow store under tmp_path, configs composed in-process."""
from __future__ import annotations

import atexit
import gc
import os
import sys
import shutil
import tempfile

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# One thread per BLAS, OpenMP (torch's intra-op pool) and XLA pool in the test processes and every
# process they start (the environment is inherited), unless the developer set them. pytest-xdist
# runs a worker per core: libraries starting a spinning thread per core then fight each other,
# and a test's own reference code (torch's training loop of tests/specs/test_torch_module.py)
# runs outside gdexp's own limit (gdexp/core/threads.py). Measured on the 2-core machine:
# test_torch_module's 68 tests took 172 s of the suite's time with two workers, its
# equality tests 51 s of CPU for 31 s alone, against 29 s of CPU with one thread, the same wall time.
# Results do not depend on it: the equality tests hold to 1e-10 either way.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
if "numpy" in sys.modules:  # a plugin imported it before this file: its pool started already
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)

# Tests mirror the layers in folders (tests/core, tests/tracking, ...) without __init__.py, and a
# few share a table with a test of another layer (test_schedules' optimizer and schedule pairs
# drive the torch equality tests; test_lr_find's checks serve the stability tests): every folder
# is importable by module name, whatever order pytest collects them in. Names stay unique.
_TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_TESTS, *sorted(os.path.join(_TESTS, d) for d in os.listdir(_TESTS)
                                if os.path.isdir(os.path.join(_TESTS, d)) and not d.startswith((".", "_")))]

# A new store is a copy of one that MLflow's migrations made once (gdexp.tracking.store.
# fresh_sqlite_store: ~2 s of migrations saved a store). The suite keeps that one in a folder
# of its own, made per session, never the user's ~/.cache/gdexp; subprocesses inherit it.
_KEPT_STORES = tempfile.mkdtemp(prefix="gdexp-tests-cache-")
atexit.register(shutil.rmtree, _KEPT_STORES, ignore_errors=True)
os.environ.setdefault("GDEXP_CACHE_DIR", _KEPT_STORES)

# MLflow reads the head revision of its schema from its ~70 alembic migration scripts each time it
# opens a store at a new URI (mlflow.store.db.utils._verify_schema: ~30 ms of the ~45 ms): every
# test's fresh store, ~1,400 times in a run of the suite (~45 s of CPU). The head is fixed for the
# installed MLflow, so the test processes read it once; a store's own revision is still read and
# compared each time (the tests of a store of another schema see MLflow's refusal as before).
def _read_mlflow_schema_head_once() -> None:
    import functools

    from mlflow.store.db import utils

    if not hasattr(utils._get_latest_schema_revision, "cache_info"):
        utils._get_latest_schema_revision = functools.cache(utils._get_latest_schema_revision)


_read_mlflow_schema_head_once()

# The garbage collector in the test processes: the modules imported by collection (MLflow,
# torch, JAX, Hydra: ~500,000 objects) are frozen out of its passes, which traversed them at every
# full collection (625 in-process tests: full collections 2.9 s -> 1.5 s). Its thresholds are
# gdexp's own (gdexp.commands.main sets them for the command's process, in-process too).
def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()


# The references some tests compare against, which .ci/run installs (torch from the CPU wheel
# on disk, jax with gdexp's `jax` extra). On a developer's machine without one, those tests
# skip, saying why; in CI (CI=true) they fail instead: a reference test must never pass CI
# having checked nothing.
REQUIRED_IN_CI = {"torch": "pip install torch==2.13.0", "jax": "pip install '.[jax]'"}
_importorskip = pytest.importorskip


def _importorskip_or_fail_in_ci(modname: str, *args, **kwargs):
    if os.environ.get("CI") and modname.split(".")[0] in REQUIRED_IN_CI:
        import importlib

        try:
            return importlib.import_module(modname)
        except ImportError as exc:
            pytest.fail(f"CI must run the {modname} reference tests, but {exc} "
                        f"(.ci/run installs it: {REQUIRED_IN_CI[modname.split('.')[0]]})", pytrace=False)
    return _importorskip(modname, *args, **kwargs)


pytest.importorskip = _importorskip_or_fail_in_ci


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


def _need_postgres(what: str):
    """Skip on a developer's machine, fail in CI: CI must run the PostgreSQL test."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL tests, but {what} (.ci/run installs it)")
    pytest.skip(f"{what}; pip install '.[postgres]' and PostgreSQL (apt-get install postgresql)")


@pytest.fixture(scope="session")
def postgres_template():
    """(server, name of a database MLflow has migrated): each test's databases are copies of it.

    Used by tests/tracking/test_fast_write.py, tests/tracking/test_fast_read.py and the MLflow servers
    of tests/e2e/test_scaleout.py: one PostgreSQL server per session (per worker)."""
    from pg_server import Postgres, PostgresMissing, mlflow_template

    try:
        pg = Postgres()
    except PostgresMissing as exc:
        _need_postgres(str(exc))
    try:
        yield pg, mlflow_template(pg)
    finally:
        pg.stop()
