"""`gdexp rerun` re-executes logged runs and catches a changed curve or data file."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from gdexp.commands.rerun import compare
from gdexp.commands.rerun import main as rerun
from cli_runner import run_cli, store_in

# Linear regression on a CSV file, so each run logs the file's checksum; a budget
# that is not the default, so a rerun from today's defaults could not match.
SWEEP = ("-m", "loss=linear_regression", "loss.data=data.csv", "optimizer.lr=0.05,0.3",
         "stopping.maxiter=150", "stopping.gtol=0")



@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rerun")
    x = np.linspace(-1.0, 2.0, 30)
    pd.DataFrame({"x": x, "y": 1.5 * x - 0.5 + 0.1 * np.sin(7 * x)}).to_csv(folder / "data.csv", index=False)
    with store_in(folder) as uri:
        assert run_cli(*SWEEP) == 0
        cl = MlflowClient(uri)
        parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0].info.run_id
        runs = sorted(cl.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent}'"),
                      key=lambda r: float(r.data.params["optimizer.lr"]))
        yield SimpleNamespace(folder=folder, cl=cl, parent=parent, runs=runs)


def _run_count(cl: MlflowClient) -> int:
    return len(cl.search_runs(["1"]))


def test_a_fresh_run_reruns_identical_and_creates_no_run(sweep, capsys):
    run = sweep.runs[0]
    assert run.data.tags["gdexp.data_sha256"]
    before = _run_count(sweep.cl)
    assert rerun([run.info.run_id]) == 0
    assert capsys.readouterr().out == f"{run.info.run_name} ({run.info.run_id}): identical (151 steps)\n"
    assert _run_count(sweep.cl) == before


def test_a_whole_sweep_reruns_identical(sweep, capsys):
    assert rerun(["--sweep", sweep.parent]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1] for line in out[:2]] == ["identical (151 steps)"] * 2
    assert out[-1] == "2 of 2 runs identical"


def test_a_tampered_curve_is_reported_at_its_step(sweep, capsys):
    run = sweep.runs[1]
    path = Path(urlparse(run.info.artifact_uri).path) / "curve.parquet"  # the local store's file
    saved = path.with_suffix(".orig")
    shutil.copy(path, saved)
    try:
        curve = pd.read_parquet(path)
        logged = curve.loc[37, "loss"]
        curve.loc[37, "loss"] = np.nextafter(logged, np.inf)  # one ulp: bit for bit still differs
        curve.to_parquet(path, index=False)
        assert rerun([run.info.run_id]) == 1
        out = capsys.readouterr().out
        assert f"{run.info.run_name} ({run.info.run_id}): differs at step 37: loss " in out
        assert f"loss {float(curve.loc[37, 'loss'])!r} logged vs {float(logged)!r} rerun" in out
        assert rerun(["--sweep", sweep.parent]) == 1
        assert capsys.readouterr().out.splitlines()[-1] == "1 of 2 runs identical, 1 not"
    finally:
        shutil.move(saved, path)


def test_a_changed_data_file_is_named_and_not_rerun(sweep, capsys, monkeypatch):
    monkeypatch.chdir(sweep.folder)
    data = sweep.folder / "data.csv"
    original = data.read_bytes()
    try:
        data.write_bytes(original + b"3.0,4.0\n")
        assert rerun([sweep.runs[0].info.run_id]) == 1
        out = capsys.readouterr().out
        assert "data file data.csv changed since the run" in out
        assert f"logged {sweep.runs[0].data.tags['gdexp.data_sha256']}" in out
    finally:
        data.write_bytes(original)


def test_bad_arguments_exit_2(sweep, capsys):
    assert rerun([]) == 2
    assert "give RUN_ID" in capsys.readouterr().err
    assert rerun(["0" * 32]) == 2
    assert "RUN_ID='00000000000000000000000000000000': no such run in" in capsys.readouterr().err


def test_compare_is_bit_for_bit_and_nan_equals_nan():
    logged = pd.DataFrame({"loss": [1.0, 0.5, np.nan], "grad_norm": [2.0, 1.0, np.nan]})
    same = {"loss": np.array([1.0, 0.5, np.nan]), "grad_norm": np.array([2.0, 1.0, np.nan])}
    assert compare("r", logged, same) == (True, "r: identical (3 steps)")
    shorter = {k: v[:2] for k, v in same.items()}
    assert compare("r", logged, shorter) == (
        False, "r: differs at step 2: the logged curve has 3 steps, the rerun 2")
    off = {"loss": same["loss"], "grad_norm": np.array([2.0, 1.25, np.nan])}
    assert compare("r", logged, off)[1] == "r: differs at step 1: grad_norm 1.0 logged vs 1.25 rerun (rel 2.0e-01)"


# --- trust: code named by a stored config -----------------------------------------------------

# A user's loss whose module, when imported, writes a file beside itself: the trace of its code running.
TRACED = '''
from pathlib import Path
import numpy as np
from gdexp.core.losses.base import Loss

Path(__file__).with_name("IMPORTED").write_text("imported")

class Bowl(Loss):
    name = "bowl"
    def __init__(self, dim=2):
        self.dim = dim
    def value_and_grad(self, x, rows=None):
        return 0.5 * np.einsum("bi,bi->b", x, x), x.copy()
    def default_init(self):
        return np.array([1.0, -2.0])[: self.dim]
'''


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A 2-D sweep of a user's loss (traced.Bowl) recorded in its own store, then the module forgotten
    (as in a fresh process) and its trace removed."""
    import sys

    folder = tmp_path_factory.mktemp("own")
    (folder / "traced.py").write_text(TRACED)
    saved = list(sys.path)
    with store_in(folder) as uri:
        assert run_cli("-m", "loss=custom", "loss._target_=traced.Bowl", "optimizer.lr=0.1,0.5",
                       "stopping.maxiter=40") == 0
        cl = MlflowClient(uri)
        parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0].info.run_id
        sys.modules.pop("traced", None)
        sys.path[:] = saved
        (folder / "IMPORTED").unlink()
        yield SimpleNamespace(folder=folder, uri=uri, cl=cl, parent=parent, trace=folder / "IMPORTED")
        sys.modules.pop("traced", None)
        sys.path[:] = saved


def test_rerun_never_imports_a_module_it_was_not_allowed(own, capsys, monkeypatch):
    monkeypatch.chdir(own.folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", own.uri)
    assert rerun(["--sweep", own.parent]) == 1
    out = capsys.readouterr().out.splitlines()
    assert not own.trace.exists()
    assert out[0].endswith("not re-executed: loss._target_='traced.Bowl': a stored config naming code "
                           "outside gdexp; it is imported only if you trust it: pass --allow-module traced")
    assert out[-1] == "0 of 2 runs identical, 2 not"
    # Allowed, it runs (so the test above could fail): identical, and the import left its trace.
    assert rerun(["--sweep", own.parent, "--allow-module", "traced"]) == 0
    assert own.trace.exists() and capsys.readouterr().out.splitlines()[-1] == "2 of 2 runs identical"


def test_report_and_load_runs_never_import_a_module_not_allowed(own, gdexp, monkeypatch, tmp_path):
    import sys

    import gdexp as api

    monkeypatch.chdir(own.folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", own.uri)
    sys.modules.pop("traced", None)
    own.trace.unlink(missing_ok=True)
    table = api.load_runs(sweep=own.parent)
    assert table["loss._target_"].tolist() == ["traced.Bowl"] * 2 and table["source_sha256"].notna().all()
    api.load_curve(table["run_id"][0])
    code, out, err = gdexp("report", "--sweep", own.parent, "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert not own.trace.exists() and "traced" not in sys.modules
    md = (tmp_path / "r" / "report.md").read_text()
    assert "No contour plot" in md and "pass --allow-module traced" in md
    code, out, err = gdexp("report", "--sweep", own.parent, "--out", str(tmp_path / "r2"),
                           "--allow-module", "traced")
    assert code == 0, err
    assert own.trace.exists() and "fig-" in (tmp_path / "r2" / "report.md").read_text().split("contours")[-1]


def test_a_changed_loss_source_is_one_line_and_not_rerun(own, capsys, monkeypatch):
    monkeypatch.chdir(own.folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", own.uri)
    source = own.folder / "traced.py"
    logged = own.cl.search_runs(["1"], f"tags.mlflow.parentRunId = '{own.parent}'")[0]
    try:
        source.write_text(TRACED + "# edited\n")
        assert rerun([logged.info.run_id, "--allow-module", "traced"]) == 1
        out = capsys.readouterr().out
        assert out.count("\n") == 1
        assert f"the source of loss._target_=traced.Bowl ({source}) changed since the run: sha256 now " in out
        assert f"logged {logged.data.tags['gdexp.source_sha256']}; not re-executed" in out
    finally:
        source.write_text(TRACED)


@pytest.mark.parametrize("text, says", [
    ("loss: [unclosed\n", "not a valid config (YAML error at line 2, column 1: expected"),
    ("- just\n- a list\n", "not a valid config (a list, not a mapping of sections)"),
    ("loss: 3\noptimizer: {name: gd}\n", "cannot re-execute its logged config: "),
    ("loss: !!python/object/apply:os.system ['touch PWNED']\n", "not a valid config (YAML error"),
])
def test_a_tampered_config_is_one_line(sweep, capsys, monkeypatch, text, says):
    monkeypatch.chdir(sweep.folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.cl.tracking_uri)
    run = sweep.runs[0]
    path = Path(urlparse(run.info.artifact_uri).path) / "config.yaml"
    saved = path.read_text()
    try:
        path.write_text(text)
        assert rerun([run.info.run_id]) == 1
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and says in out and "Traceback" not in out
        assert not (sweep.folder / "PWNED").exists()
    finally:
        path.write_text(saved)


def test_allow_module_must_be_a_module_name(sweep, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.cl.tracking_uri)
    assert rerun(["--sweep", sweep.parent, "--allow-module", "my-pkg"]) == 2
    assert capsys.readouterr().err == ("gdexp: error: --allow-module='my-pkg': not a module name "
                                       "like mypkg or mypkg.losses\n")


def test_a_run_on_a_bundled_data_set_reruns_identical(gdexp, store, capsys):
    """The MLP on digits logs the data set's checksum without a data file: checked on the rebuilt loss."""
    code, _, err = gdexp("loss=mlp", "loss.hidden=[4]", "loss.batch_size=64", "stopping.maxiter=30")
    assert code == 0, err
    (run,) = MlflowClient(store).search_runs(["1"])
    assert run.data.tags["gdexp.data_sha256"]
    assert rerun([run.info.run_id]) == 0
    assert capsys.readouterr().out.endswith("identical (31 steps)\n")
