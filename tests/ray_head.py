"""A throwaway Ray head on 127.0.0.1, stopped alone: shared by tests/e2e/test_scaleout.py and
benchmarks/bench_scaleout.py.

`ray stop --force` kills every Ray process of the user on the machine: another test run's
cluster, a developer's own. A RayHead stops only the processes of the cluster it started: those
whose command line names its temp folder or its GCS port, and their descendants (Ray's agents
and workers).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pg_server import free_port

BIN = Path(sys.executable).parent
ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


class RayHead:
    """`ray start --head` on a free port with its own temp folder; `address` once started."""

    def __init__(self, num_cpus: int = 2):
        self.port, self.num_cpus = free_port(), num_cpus
        self.temp = Path(tempfile.mkdtemp(prefix="gdexp-ray-"))  # short: Ray's socket paths have a length limit
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> subprocess.CompletedProcess:
        """Start it; the finished `ray start` (its return code says whether it started)."""
        return subprocess.run(
            [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
             "--include-dashboard=false", f"--num-cpus={self.num_cpus}", "--disable-usage-stats",
             f"--temp-dir={self.temp}"], env=dict(os.environ, **ENV), capture_output=True, text=True, timeout=120)

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM this cluster's processes, SIGKILL those left after `grace_s`; returns how many."""
        mine = _cluster_pids(str(self.temp), self.port)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in [p for p in mine if _alive(p)]:  # not a PID that ended (and may be reused)
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace_s
            while sig == signal.SIGTERM and time.monotonic() < deadline and any(map(_alive, mine)):
                time.sleep(0.1)
        shutil.rmtree(self.temp, ignore_errors=True)
        return len(mine)


def _cluster_pids(temp: str, port: int) -> set[int]:
    """The processes naming `temp` or the GCS port in their command line, and their descendants."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace") + " "
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry.name)] = (ppid, cmd)
    # Ray's client server names only the GCS address (`--address=IP:PORT`), the others the folder.
    names = (f"{temp}/", f"{temp} ", f":{port} ")  # whole names: not another folder starting alike
    mine = {pid for pid, (_, cmd) in table.items() if any(n in cmd for n in names)} - {os.getpid()}
    while True:
        children = {pid for pid, (ppid, _) in table.items() if ppid in mine} - mine
        if not children:
            return mine
        mine |= children


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, waiting for its parent to reap it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
