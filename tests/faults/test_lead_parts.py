"""Issue 15's faults whose fix is the batched write path's (gdexp/hydra/launchers/batched.py,
gdexp/tracking/bulk.py, gdexp/core/resources.py): a full disk under the store (item 6: what
cannot be recorded is kept on disk for `gdexp resume`) and a memory estimate before allocating
(item 9: one line naming the key, no run created)."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from fault_tools import all_runs, census

pytestmark = pytest.mark.faults

MEMORY_LIMIT = 4 * 2**30  # address space of the gdexp under test: what does not fit fails, not the machine


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _gdexp_limited(cwd, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from gdexp.commands.main import main; main()", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, preexec_fn=_limited)


@pytest.mark.parametrize("args, key", [
    (["stopping.maxiter=1000000000000", "stopping.gtol=0"], "stopping.maxiter"),
    (["loss=linear_regression", "loss.n=1000000000"], "loss.n"),
    (["loss=logistic_regression", "loss.n=10000000000"], "loss.n"),
    (["loss=rosenbrock", "loss.dim=10000000000"], "loss.dim"),
    (["loss=mlp", "loss.dataset=iris", "loss.hidden=[100000,100000]"], "loss.hidden"),
    (["-m", "loss=booth", "optimizer.lr=logspace(1e-6,1e-3,100)", "stopping.maxiter=1000000000", "stopping.gtol=0"],
     "stopping.maxiter"),
], ids=["maxiter-1e12", "n-1e9", "logistic-n-1e10", "dim-1e10", "mlp-1e10-weights", "grid-100x1e9"])
def test_what_cannot_fit_in_memory_is_one_line_before_any_run(store, tmp_path, args, key):
    done = _gdexp_limited(tmp_path, *args)
    lines = [line for line in done.stderr.splitlines() if line.strip() and "INFO mlflow" not in line]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"gdexp: error: {key}="), lines
    assert all_runs(store) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs at tmp_path/disk (root only; skipped, saying why, where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 4 MiB tmpfs here (needs root): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_keeps_what_it_cannot_record_for_resume(gdexp, small_disk, tmp_path, monkeypatch):
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    sweep_dir = tmp_path / "sweep"
    # the curve files fit (20 x 2,001 steps x 4 columns x 8 B = 1.3 MB, checked before the sweep);
    # MLflow's 20 x 3 x 2,000 metric rows in the SQLite file beside them do not
    code, out, err = gdexp("-m", "loss=rosenbrock", "optimizer.lr=logspace(1e-5,1e-3,20)", "stopping.maxiter=2000",
                           "stopping.gtol=0", "tracking.curve_points=2000", f"hydra.sweep.dir={sweep_dir}")
    assert code == 1 and "Traceback" not in err, err[-3000:]
    assert f"gdexp resume {sweep_dir}" in err
    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0, err
    found = census(uri, sweep_dir)
    assert (found["lost"], found["duplicated"], found["running"], found["parent"]) == (0, 0, 0, "FINISHED")


def test_curves_that_cannot_fit_on_the_disk_are_one_line_before_any_run(gdexp, small_disk, tmp_path, monkeypatch):
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # 20 x 200,001 steps x 4 columns (loss, gradient norm, x, y) x 8 B = 128 MB of curves, on a 4 MiB disk
    code, out, err = gdexp("-m", "loss=rosenbrock", "optimizer.lr=logspace(1e-5,1e-3,20)", "stopping.maxiter=200000",
                           "stopping.gtol=0", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    lines = [line for line in err.splitlines() if line.strip() and "INFO mlflow" not in line]
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert lines[0].startswith("gdexp: error: stopping.maxiter=200000: the sweep's 20 runs may write up to 128 MB"), lines
    assert all_runs(uri) == []
