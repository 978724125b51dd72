"""Commands and functions that only read a store (report, compare, rerun, load_runs, load_curve) and
`gdexp resume`, given input they cannot use: each says so in one line ``gdexp: error: KEY=VALUE:
reason``, exits 2 (the API raises ConfigError), and creates nothing: no store file, no lock file,
no run, no report folder.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cli_runner import runs_of

import gdexp as api
from gdexp.core.errors import ConfigError


def files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.fixture
def swept(gdexp, store, tmp_path):
    """A finished two-run sweep in `store`, its folder tmp_path/sw; (uri, parent run id, folder)."""
    code, out, err = gdexp("-m", "loss=booth", "optimizer.lr=0.01,0.1", "stopping.maxiter=20",
                           f"hydra.sweep.dir={tmp_path / 'sw'}")
    assert code == 0, err
    _, children, parents = runs_of(store)
    assert len(parents) == 1 and len(children) == 2
    return store, parents[0].info.run_id, tmp_path / "sw"


def refused(gdexp, tmp_path, store, args, line):
    """`gdexp ARGS` exits 2 with exactly `line` on stderr, and nothing under tmp_path or in the store changed."""
    before, runs = files(tmp_path), len(runs_of(store)[1]) + len(runs_of(store)[2])
    code, out, err = gdexp(*args)
    assert (code, err) == (2, line + "\n"), (args, code, err)
    assert "Traceback" not in out + err
    assert files(tmp_path) == before, (args, files(tmp_path) - before)
    assert len(runs_of(store)[1]) + len(runs_of(store)[2]) == runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- 3 (and 1): a store that is not there is refused, never created ---------------------------------
def test_readers_refuse_a_sqlite_store_that_is_not_there(gdexp, swept, tmp_path, monkeypatch):
    store, parent, folder = swept
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # it would win over --tracking-uri
    child = runs_of(store)[1][0].info.run_id
    for name, args in (("a.db", ["report"]), ("b.db", ["report", "--sweep", parent]),
                       ("c.db", ["compare", parent, parent]), ("d.db", ["rerun", child]),
                       ("e.db", ["rerun", "--sweep", parent]), ("f.db", ["rerun", "--experiment", "gdexp"]),
                       ("g.db", ["resume", str(folder)])):
        for uri in (f"sqlite:///{tmp_path / name}", f"sqlite:///{tmp_path / 'nodir' / name}"):
            path = uri[len("sqlite:///"):]
            refused(gdexp, tmp_path, store, [*args, "--tracking-uri", uri],
                    f"gdexp: error: tracking.uri={uri!r}: no MLflow store there ({path} does not exist); "
                    "name the file a sweep recorded into (its last lines say which)")


def test_a_read_only_command_run_where_there_is_no_store_creates_none(gdexp, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    for args in (["report"], ["rerun", "--experiment", "gdexp"], ["compare", "a", "b"]):
        code, out, err = gdexp(*args)
        assert code == 2 and err == (f"gdexp: error: tracking.uri='sqlite:///{tmp_path / 'mlflow.db'}': no MLflow "
                                     f"store there ({tmp_path / 'mlflow.db'} does not exist); name the file a sweep "
                                     "recorded into (its last lines say which)\n"), err
    assert not list(tmp_path.iterdir())


def test_a_file_that_is_no_mlflow_store_is_refused_untouched(gdexp, swept, tmp_path, monkeypatch):
    store, parent, folder = swept
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # it would win over --tracking-uri
    for name, content in (("empty.db", b""), ("text.db", b"hello")):
        path = tmp_path / name
        path.write_bytes(content)
        refused(gdexp, tmp_path, store, ["report", "--tracking-uri", f"sqlite:///{path}"],
                f"gdexp: error: tracking.uri='sqlite:///{path}': no MLflow store there ({path} is not an "
                "MLflow SQLite database)")
        assert path.read_bytes() == content


def test_load_runs_and_load_curve_refuse_a_store_that_is_not_there(swept, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # it would win over tracking_uri
    before = files(tmp_path)
    for call in (lambda uri: api.load_runs(tracking_uri=uri), lambda uri: api.load_runs(experiment="gdexp", tracking_uri=uri),
                 lambda uri: api.load_curve("0" * 32, tracking_uri=uri)):
        uri = f"sqlite:///{tmp_path / 'x' / 'nosuch.db'}"
        with pytest.raises(ConfigError) as exc:
            call(uri)
        assert str(exc.value) == (f"tracking.uri={uri!r}: no MLflow store there ({tmp_path / 'x' / 'nosuch.db'} "
                                  "does not exist); name the file a sweep recorded into (its last lines say which)")
    assert files(tmp_path) == before


# --- 1: resume into a store without the sweep ------------------------------------------------------
def test_resume_into_a_store_without_the_sweep_says_so(gdexp, swept, tmp_path):
    store, parent, folder = swept
    other = tmp_path / "other.db"
    from gdexp.tracking.store import client

    client(f"sqlite:///{other}")  # an MLflow store, without this sweep
    refused(gdexp, tmp_path, store, ["resume", str(folder), "--tracking-uri", f"sqlite:///{other}"],
            f"gdexp: error: tracking.uri='sqlite:///{other}': this sweep's parent run {parent} is not in this "
            "store; name the store the sweep recorded into")


# --- 5: resume of a folder that is no sweep's -------------------------------------------------------
def test_resume_refuses_a_folder_that_is_no_sweep(gdexp, swept, tmp_path):
    store, parent, folder = swept
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("x")
    refused(gdexp, tmp_path, store, ["resume", str(plain)],
            f"gdexp: error: folder={str(plain)!r}: not a sweep folder: no gdexp-plan.json and no "
            "gdexp-unrecorded/ (runs kept on disk) in it")
    refused(gdexp, tmp_path, store, ["resume", str(tmp_path / "gone")],
            f"gdexp: error: folder={str(tmp_path / 'gone')!r}: no such folder; name the sweep folder "
            "(hydra.sweep.dir) or run folder the sweep's message named")
    code, out, err = gdexp("resume", str(folder))  # the real sweep folder still resumes
    assert code == 0 and "0 to go" in out, err


# --- 2: --out that cannot be a folder ----------------------------------------------------------------
def test_report_refuses_an_out_that_cannot_be_a_folder(gdexp, swept, tmp_path):
    store, parent, folder = swept
    afile = tmp_path / "a-file"
    afile.write_text("x")
    for command in (["report"], ["compare", parent, parent]):
        for out, why in (("/dev/null", "/dev/null is not a folder (a file or a device is there)"),
                         (str(afile), f"{afile} is not a folder (a file or a device is there)")):
            refused(gdexp, tmp_path, store, [*command, "--out", out],
                    f"gdexp: error: --out={out!r}: {why}; name a folder for the report")
        refused(gdexp, tmp_path, store, [*command, "--out", str(afile / "sub")],
                f"gdexp: error: --out={str(afile / 'sub')!r}: the report folder cannot be made: "
                f"{afile} is not a folder")
    code, out, err = gdexp("report", "--out", "/proc/x")
    assert code == 2 and err.startswith("gdexp: error: --out='/proc/x': the report folder cannot be made: "
                                        "cannot write in /proc") and err.count("\n") == 1, err
    assert afile.read_text() == "x"


def test_out_is_checked_before_the_store_is_read(gdexp, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'nosuch.db'}")
    code, out, err = gdexp("report", "--out", "/dev/null")
    assert code == 2 and err.startswith("gdexp: error: --out='/dev/null': ")
    assert not list(tmp_path.iterdir())


# --- 4: unknown run ids, experiments, an unreachable server -----------------------------------------
def test_unknown_run_ids_are_named_as_typed(gdexp, swept, tmp_path):
    store, parent, folder = swept
    child = runs_of(store)[1][0].info.run_id
    for args, key, value, reason in (
            (["report", "--sweep", "nonexistent"], "--sweep", "nonexistent", f"no such run in {store}"),
            (["report", "--sweep", parent, "--sweep", "nonexistent"], "--sweep", "nonexistent", f"no such run in {store}"),
            (["compare", parent, "nonexistent"], "SWEEP", "nonexistent", f"no such run in {store}"),
            (["rerun", "nonexistent"], "RUN_ID", "nonexistent", f"no such run in {store}"),
            (["rerun", "--sweep", "nonexistent"], "--sweep", "nonexistent", f"no such run in {store}"),
            (["report", "--sweep", child], "--sweep", child, "this run is not a sweep's parent run (no tag "
                                                            "gdexp.sweep=true); pass a sweep's parent run id"),
            (["compare", parent, parent], "SWEEP", parent, "a sweep named twice"),
            (["report", "--experiment", "nope"], "--experiment", "nope", f"no experiment named 'nope' in {store}"),
            (["rerun", "--experiment", "nope"], "--experiment", "nope", f"no experiment named 'nope' in {store}")):
        refused(gdexp, tmp_path, store, args, f"gdexp: error: {key}={value!r}: {reason}")


def test_the_api_raises_config_error_for_unknown_ids(swept, tmp_path):
    store, parent, folder = swept
    for call, line in ((lambda: api.load_runs(sweep="nonexistent"), f"sweep='nonexistent': no such run in {store}"),
                       (lambda: api.load_curve("nonexistent"), f"run_id='nonexistent': no such run in {store}"),
                       (lambda: api.load_runs(experiment="nope"), f"experiment='nope': no experiment named 'nope' in {store}")):
        with pytest.raises(ConfigError) as exc:
            call()
        assert str(exc.value) == line
        assert isinstance(exc.value, LookupError)  # as load_runs raised for an unknown experiment before


def test_an_unreachable_server_is_one_line_at_once(gdexp, store, tmp_path, monkeypatch):
    import time

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # it would win over --tracking-uri

    uri = f"http://127.0.0.1:{free_port()}"
    for args in (["report"], ["compare", "a", "b"], ["rerun", "x"], ["rerun", "--sweep", "x"]):
        start = time.monotonic()
        code, out, err = gdexp(*args, "--tracking-uri", uri)
        assert time.monotonic() - start < 5
        assert code == 2 and err.startswith(f"gdexp: error: tracking.uri={uri!r}: the tracking server does not "
                                            "answer from ") and err.count("\n") == 1, err
    with pytest.raises(ConfigError, match="the tracking server does not answer"):
        api.load_runs(tracking_uri=uri)
    assert not list(Path(tmp_path).glob("*.db"))
