"""Output that must not bury the one line that matters (issue 20, item 6): a full disk under the
store without SQLAlchemy's logged tracebacks, a user loss that raises under the basic launcher in
one line, `resume` without the whole table again, the end of a sweep whose jobs made no run,
and no output folder left by a refused single run."""
from __future__ import annotations

import subprocess

import pytest

from fault_tools import all_runs, census, on_each_write, start_gdexp, write_module
from test_lead_parts import small_disk  # noqa: F401 - the 4 MiB tmpfs fixture

pytestmark = pytest.mark.faults

RAISING_LOSS = '''
import numpy as np
from gdexp.core.losses.base import Loss


class Cliff(Loss):
    name = "cliff"

    def __init__(self, dim=2, scale=1.0):
        self.dim, self.scale, self.calls = dim, scale, 0

    def value_and_grad(self, x, rows=None):
        self.calls += 1
        if self.calls > 12 and self.scale > 1:  # past its probes and gradient check: inside the descent
            raise ArithmeticError(f"the cliff at scale {self.scale}")
        return 0.5 * self.scale * np.einsum("bi,bi->b", x, x), self.scale * x

    def default_init(self):
        return np.full(self.dim, 2.0)
'''


def test_a_full_disk_says_its_line_without_sqlalchemys_tracebacks(small_disk, tmp_path):  # noqa: F811
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweep"
    process = start_gdexp("-m", "loss=rosenbrock", "optimizer.lr=logspace(1e-5,1e-3,20)", "stopping.maxiter=2000",
                          "stopping.gtol=0", "tracking.curve_points=2000", f"hydra.sweep.dir={sweep_dir}",
                          cwd=tmp_path, MLFLOW_TRACKING_URI=uri)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err[-3000:]
    assert "Traceback" not in err and "sqlalchemy" not in err.lower() and "SQLAlchemy" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip() and "INFO mlflow" not in line]
    assert len(lines) <= 5, err  # the store's one line, then how to finish: gdexp resume DIR
    assert any("database or disk is full" in line for line in lines) and f"gdexp resume {sweep_dir}" in err
    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    process = start_gdexp("resume", str(sweep_dir), cwd=tmp_path, MLFLOW_TRACKING_URI=uri)
    process.communicate(timeout=300)
    found = census(uri, sweep_dir)
    assert (process.returncode, found["lost"], found["duplicated"], found["running"]) == (0, 0, 0, 0)


@pytest.mark.parametrize("launcher", ["basic", "gdexp", "joblib"])
def test_a_user_loss_that_raises_is_one_line_under_every_launcher(gdexp, store, tmp_path, launcher):
    write_module(tmp_path, "cliffloss", RAISING_LOSS)
    sweep_dir = tmp_path / "sweep"
    code, out, err = gdexp("-m", "loss=custom", "loss._target_=cliffloss.Cliff", "+loss.scale=1,2,3",
                           "stopping.maxiter=20", f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}")
    assert code == 1 and "Traceback" not in err, err
    if launcher != "joblib":  # joblib's workers write to the terminal itself, not to what capsys reads
        failed = [line for line in err.splitlines() if "FAILED:" in line]
        assert len(failed) == 2 and all("ArithmeticError: the cliff at scale" in line for line in failed), err
    tags = [r.data.tags.get("gdexp.error", "") for r in all_runs(store)
            if r.info.status == "FAILED" and "mlflow.parentRunId" in r.data.tags]
    assert len(tags) == 2 and all(t.startswith("ArithmeticError: the cliff at scale") for t in tags), tags
    assert err.strip().splitlines()[-1] == ("gdexp: 2 of 3 runs failed (their errors are above and on each run's "
                                            "gdexp.error tag)")
    found = census(store, sweep_dir)
    assert (found["finished"], found["running"], found["parent"]) == (1, 0, "FAILED")


def test_jobs_that_made_no_run_are_not_sent_to_a_runs_tag(gdexp, store, tmp_path, monkeypatch):
    """joblib's jobs that cannot read their data file (deleted mid-sweep) have no run to tag."""
    from test_midsweep import _after_first_batch, _data, _sweep

    csv, sweep_dir = _data(tmp_path / "d.csv", 2.0), tmp_path / "sweep"
    _after_first_batch(monkeypatch, csv.unlink)
    code, out, err = _sweep(gdexp, csv, sweep_dir, "joblib")
    assert code == 1
    assert err.strip().splitlines()[-1] == "gdexp: 6 of 8 runs failed (their errors are above; 6 jobs made no run)"
    assert "gdexp.error tag" not in err


def test_resume_says_the_answers_without_the_whole_table_again(gdexp, store, tmp_path):
    import sqlalchemy.exc

    def locked(k):
        if k >= 3:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    sweep_dir = tmp_path / "sweep"
    with pytest.MonkeyPatch.context() as fault:
        fault.setenv("GDEXP_LOCK_WAIT_S", "0.5")
        on_each_write(fault, "fast", "log_batch", locked)
        code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.02,0.03,0.04", "stopping.maxiter=5",
                               "hydra.sweeper.max_batch_size=1", f"hydra.sweep.dir={sweep_dir}")
    assert code == 1 and "Traceback" not in err, err
    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0 and "recorded 2 runs" in out, err
    assert "run_name" not in out and "booth-gd-lr=0.01" not in out, out  # no table of runs again
    assert "runs=4" in out and "best_lr" in out and "Open the MLflow UI" in out, out


@pytest.mark.parametrize("args", [
    ["optimizer.lr=-1"], ["stopping.maxiter=0"], ["loss=booth", "init=[1]"], ["loss.nope=1"],
    ["optimizer._target_=os.getcwd"], ["seed=-1"], ["loss=custom", "loss._target_=nomodule.f"],
])
def test_a_refused_single_run_leaves_no_output_folder(gdexp, store, tmp_path, args):
    code, out, err = gdexp(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "outputs").exists(), sorted(p.name for p in (tmp_path / "outputs").rglob("*"))
