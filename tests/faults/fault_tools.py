"""What the fault tests share: gdexp in its own process, the store read through MLflow's client,
the issue's figures (runs lost, duplicated, left RUNNING), a loss that blocks on demand."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from collections import Counter
from pathlib import Path

import pytest

# A loss that blocks inside its descent (not while it is validated: building it probes it a few
# times and checks its gradient against central differences in 6 calls) when GDEXP_TEST_BLOCK names
# its scale (or is "*": every job): a job then stays in flight, its run RUNNING, as long as the test wants.
BLOCKING_LOSS = '''
import os, time
import numpy as np
from gdexp.core.losses.base import Loss


class Bowl(Loss):
    name = "bowl"

    def __init__(self, dim=2, scale=1.0):
        self.dim, self.scale, self.calls = dim, scale, 0

    def value_and_grad(self, x, rows=None):
        self.calls += 1
        if self.calls > 12 and os.environ.get("GDEXP_TEST_BLOCK") in (f"{self.scale:g}", "*"):
            time.sleep(float(os.environ.get("GDEXP_TEST_BLOCK_S", "3600")))
        return 0.5 * self.scale * np.einsum("bi,bi->b", x, x), self.scale * x

    def default_init(self):
        return np.full(self.dim, 2.0)
'''


def start_gdexp(*args: str, cwd: Path, **env: str) -> subprocess.Popen:
    """`gdexp ARGS` in its own process (the code under test: PYTHONPATH, as the test runs it)."""
    command = [sys.executable, "-c", "from gdexp.commands.main import main; main()", *args]
    return subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def client(uri: str):
    """MLflow's client on `uri`; a SQLite file opened under gdexp's lock beside it (`<file>.lock`),
    so that polling a store a gdexp process is creating does not race its schema migration."""
    from filelock import FileLock
    from mlflow import MlflowClient

    from gdexp.tracking.uris import sqlite_path

    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri)
    with FileLock(f"{path}.lock"):
        cl = MlflowClient(tracking_uri=uri)
        cl._tracking_client.store  # noqa: B018 - opened (created, migrated) under the lock
    return cl


def all_runs(uri: str) -> list:
    """Every run of every experiment, deleted ones too (a duplicate must not hide there); none in
    a SQLite store whose file does not exist, which MLflow's client would create and migrate (~1 s)
    to find nothing in, hiding whether gdexp made it."""
    from mlflow.entities import ViewType

    from gdexp.tracking.uris import sqlite_path

    path = sqlite_path(uri)
    if path is not None and not path.exists():
        return []

    cl = client(uri)
    ids = [e.experiment_id for e in cl.search_experiments(view_type=ViewType.ALL)]
    return list(cl.search_runs(ids, "", run_view_type=ViewType.ALL, max_results=50000)) if ids else []


def census(uri: str, sweep_dir: Path) -> dict:
    """The issue's figures for a sweep, from its plan and the store: planned configs, runs lost
    (no FINISHED run), duplicated (more than one FINISHED run), left RUNNING (any run of the
    store), and the parent's status."""
    plan = json.loads((sweep_dir / "gdexp-plan.json").read_text())
    runs = all_runs(uri)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == plan["parent_id"]]
    finished = Counter(r.data.tags.get("gdexp.config_hash") for r in children if r.info.status == "FINISHED")
    hashes = [job["config_hash"] for job in plan["jobs"]]
    parent = next(r for r in runs if r.info.run_id == plan["parent_id"])
    return {"planned": len(hashes), "finished": sum(finished[h] >= 1 for h in hashes),
            "lost": sum(finished[h] == 0 for h in hashes), "duplicated": sum(finished[h] > 1 for h in hashes),
            "running": sum(r.info.status == "RUNNING" for r in runs), "parent": parent.info.status,
            "active_children": sum(r.info.lifecycle_stage == "active" for r in children)}


def wait_for(predicate, timeout: float, what: str, every: float = 0.1):
    """Poll until predicate() is truthy (returns it); fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def finished_children(uri: str) -> int:
    try:
        return sum(r.info.status == "FINISHED" and "mlflow.parentRunId" in r.data.tags for r in all_runs(uri))
    except Exception:  # noqa: BLE001 - the store is still being created
        return 0


def stop(process: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 60) -> tuple[int, str, str]:
    """Send `sig`, wait; (exit status, stdout, stderr)."""
    process.send_signal(sig)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def write_module(folder: Path, name: str, text: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(text))


@contextmanager
def read_only(folder: Path):
    """`folder` read-only for the block: by its mode for a normal user; for root, whom modes do not
    stop, as a read-only bind mount (skipped, saying why, where root may not mount)."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"root, and cannot bind-mount {folder} read-only here: {mounted.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True, capture_output=True)


@contextmanager
def locked_store(path: Path, seconds: float):
    """Another process holds `BEGIN EXCLUSIVE` on the SQLite file for `seconds` (from when the block starts)."""
    holder = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def make_store(uri: str) -> None:
    """Create (migrate) a SQLite store that this process has not opened yet: a copy of the migrated
    empty store kept for the session (gdexp's fresh_sqlite_store), else made by MLflow in another
    process."""
    from gdexp.tracking.uris import sqlite_path
    from gdexp.tracking.store import fresh_sqlite_store

    if fresh_sqlite_store(sqlite_path(uri)):
        return
    subprocess.run([sys.executable, "-c", f"from mlflow import MlflowClient; MlflowClient({uri!r}).search_experiments()"],
                   check=True, capture_output=True, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def on_each_write(monkeypatch, path: str, client_method: str, fault) -> list[str]:
    """Call fault(k) before the k-th write of a sweep's runs' records (k = 1, 2, ...): on the fast path
    each chunk's insert of runs with a parent (gdexp.tracking.fast.write._flush), on MLflow's client path (forced) each
    call of SqlAlchemyStore.<client_method>. fault may raise or signal. Returns the run ids
    written, in order (the fast path: every run of each chunk)."""
    import gdexp.tracking.bulk as bulk
    from gdexp.tracking.fast import write as fast_write
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    writes: list[str] = []
    if path == "fast":
        real = fast_write._flush

        def flush(conn, runs, tags, *rows):
            children = {t["run_uuid"] for t in tags if t["key"] == "mlflow.parentRunId"}
            if children:  # not the sweep's parent run, also written on this path
                writes.extend(run["run_uuid"] for run in runs if run["run_uuid"] in children)
                fault(len(writes))
            return real(conn, runs, tags, *rows)

        monkeypatch.setattr(fast_write, "_flush", flush)
    else:
        real_method = getattr(SqlAlchemyStore, client_method)

        def method(self, run_id, *args, **kwargs):
            writes.append(run_id)
            fault(len(writes))
            return real_method(self, run_id, *args, **kwargs)

        monkeypatch.setattr(bulk, "_fast", lambda store: False)
        monkeypatch.setattr(SqlAlchemyStore, client_method, method)
    return writes
