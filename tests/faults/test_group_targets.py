"""An optimizer's or a schedule's `_target_` that is not of its group's kind (issue 20, item 4):
refused before it is called, one line, exit status 2, no run and no output folder left behind."""
from __future__ import annotations

import pytest

from fault_tools import all_runs, write_module

pytestmark = pytest.mark.faults

# Each would run something if called: a shell, a logging set-up, a folder read, a loss, the wrong group.
NOT_OPTIMIZERS = ["os.system", "os.getcwd", "logging.basicConfig", "builtins.print", "subprocess.run",
                  "gdexp.core.losses.Rosenbrock", "gdexp.core.schedules.cosine", "gdexp.core.optimizers.Optimizer",
                  "collections.OrderedDict", "sitefake.not_annotated", "sitefake.wrong_return"]
NOT_SCHEDULES = ["os.system", "logging.basicConfig", "os.getcwd", "shutil.rmtree", "builtins.exec",
                 "gdexp.core.optimizers.adam", "gdexp.core.losses.Booth", "gdexp.core.schedules.Schedule",
                 "sitefake.not_annotated", "sitefake.wrong_return"]

FAKES = '''
import os
from gdexp.core.optimizers import Optimizer, gd
from gdexp.core.schedules import Schedule, constant


def not_annotated(lr=0.1, maxiter=None):
    os.makedirs("CALLED", exist_ok=True)   # would show that it was called
    return gd(lr)


def wrong_return(lr: float = 0.1, maxiter=None) -> dict:
    os.makedirs("CALLED", exist_ok=True)
    return {}


def my_gd(lr: float = 0.1, weight_decay: float = 0.0) -> Optimizer:
    """A user's own optimizer factory: of the kind, so it runs."""
    return gd(lr, weight_decay)


def my_constant(*, maxiter=None) -> "Schedule":
    return constant(maxiter=maxiter)
'''


def _refused(gdexp, tmp_path, key: str, target: str, sweep: bool) -> str:
    args = ["-m", "optimizer.lr=0.01,0.02"] if sweep else []
    code, out, err = gdexp(*args, "loss=booth", "stopping.maxiter=5", f"{key}={target}")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (target, err)
    assert lines[0].startswith(f"gdexp: error: {key}='{target}': "), lines[0]
    assert not (tmp_path / "CALLED").exists(), f"{target} was called"
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists(), target
    return lines[0]


KINDS = {"optimizer": (NOT_OPTIMIZERS, "not an optimizer: name a factory annotated "
                                       "-> gdexp.core.optimizers.Optimizer taking lr"),
         "schedule": (NOT_SCHEDULES, "not a schedule: name a factory annotated "
                                     "-> gdexp.core.schedules.Schedule taking maxiter")}


@pytest.mark.parametrize("sweep", [False, True], ids=["single", "sweep"])
@pytest.mark.parametrize("group", list(KINDS))
def test_a_target_of_another_kind_is_one_line_before_it_runs(gdexp, store, tmp_path, group, sweep):
    write_module(tmp_path, "sitefake", FAKES)
    targets, reason = KINDS[group]
    for target in targets:
        line = _refused(gdexp, tmp_path, f"{group}._target_", target, sweep)
        assert reason in line, line
    assert all_runs(store) == []


def test_a_users_factory_of_the_right_kind_runs(gdexp, store, tmp_path):
    write_module(tmp_path, "sitefake", FAKES)
    code, out, err = gdexp("loss=booth", "stopping.maxiter=5", "optimizer._target_=sitefake.my_gd",
                           "optimizer.lr=0.01", "schedule._target_=sitefake.my_constant")
    assert code == 0, err
    [run] = all_runs(store)
    assert run.info.status == "FINISHED" and run.data.params["optimizer._target_"] == "sitefake.my_gd"
