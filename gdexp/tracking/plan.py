"""A sweep's plan: its jobs and their config hashes, written to its folder before any job runs.

A sweep killed half-way (kill -9, a lost machine) leaves no summary; the plan
says what it was meant to run. `gdexp resume SWEEP_DIR` (gdexp.commands.resume)
compares it with the runs in the store, runs only the configs without a
FINISHED run, and `gdexp report` says how many of the planned runs exist.

`<sweep folder>/gdexp-plan.json` holds: the parent run id, the store and
experiment, the command's arguments and start folder (to run it again), the
sweep process (pid, host, start time: is it gone?), the number of planned runs
(null for a search, whose jobs depend on its results) and each job's number,
overrides and config hash. The same process facts are tags on the parent run
(gdexp.pid, gdexp.host, gdexp.process_started, gdexp.planned_runs).
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from gdexp.tracking import TAG

PLAN = "gdexp-plan.json"
PLANNED_TAG = f"{TAG}planned_runs"   # on the parent: how many runs the sweep was meant to make
PID_TAG, HOST_TAG = f"{TAG}pid", f"{TAG}host"  # on the parent: the sweep's process ...
STARTED_TAG = f"{TAG}process_started"          # ... and its start time (a pid reused is not it)


@dataclass(frozen=True)
class Plan:
    """What a sweep was meant to run, and where its runs go.

    Attributes:
        parent_id, uri, experiment, sweep_name: its parent run and store.
        argv: the `gdexp` arguments as given (gdexp.tracking.provenance.command).
        start_dir: the folder gdexp was started in (relative paths in the config are from there).
        process: the sweep's process: {"pid", "host", "started"} (started: its start time in
            clock ticks since boot, so a pid reused by a later process is not mistaken for it).
        jobs: [{"num", "overrides", "config_hash"}] of a grid; empty for a search.
        planned: the number of planned runs; None for a search.
        data: the checksums of the data files the jobs were validated with: a job whose
            file changed since is refused (gdexp.tracking.guards.check_planned).
    """

    parent_id: str
    uri: str
    experiment: str
    sweep_name: str
    argv: list[str]
    start_dir: str
    process: dict
    jobs: list[dict] = field(default_factory=list)
    planned: int | None = None
    data: list[str] = field(default_factory=list)

    def tags(self) -> dict[str, str]:
        """The parent run's tags for this plan."""
        tags = {PID_TAG: str(self.process["pid"]), HOST_TAG: self.process["host"]}
        if self.process.get("started") is not None:
            tags[STARTED_TAG] = str(self.process["started"])
        if self.planned is not None:
            tags[PLANNED_TAG] = str(self.planned)
        return tags

    def hashes(self) -> list[str]:
        return [job["config_hash"] for job in self.jobs]


def job_entries(jobs: list[list[str]], hashes: list[str]) -> list[dict]:
    """The plan's job list, numbered as Hydra numbers them.

    >>> job_entries([["optimizer.lr=0.1"]], ["ab12"])
    [{'num': 0, 'overrides': ['optimizer.lr=0.1'], 'config_hash': 'ab12'}]
    """
    return [{"num": num, "overrides": list(o), "config_hash": h} for num, (o, h) in enumerate(zip(jobs, hashes))]


def write_plan(folder: Path, plan: Plan) -> Path:
    """Write `plan` to `folder`/gdexp-plan.json, whole or not at all (a temporary file renamed)."""
    path = Path(folder) / PLAN
    body = asdict(plan)
    jobs = body.pop("jobs")  # one line each: a 100,000-job plan stays a few MB
    lines = [f"  {json.dumps(job)}" for job in jobs]
    text = json.dumps(body, indent=1)[:-2] + ',\n "jobs": [\n' + ",\n".join(lines) + "\n ]\n}\n"
    tmp = path.with_name(f".{PLAN}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def read_plan(folder: Path) -> Plan | None:
    """The plan in `folder`, or None when there is none (a sweep of gdexp < 0.3, a run's folder)."""
    path = Path(folder) / PLAN
    if not path.is_file():
        return None
    return Plan(**json.loads(path.read_text()))


def this_process() -> dict:
    """{"pid", "host", "started"} of the running process."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_ticks(os.getpid())}


def process_state(process: dict) -> str:
    """'alive', 'gone', or 'elsewhere' (on another host: this one cannot tell)."""
    if process.get("host") != socket.gethostname():
        return "elsewhere"
    pid = int(process["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # alive, another user's: the start time tells whether it is the same process
    started = _start_ticks(pid)
    if started is None or process.get("started") is None:
        return "alive"
    return "alive" if started == process["started"] else "gone"


def with_process(plan: Plan) -> Plan:
    """The plan, its process now this one (a resumed sweep)."""
    return replace(plan, process=this_process())


def _start_ticks(pid: int) -> int | None:
    """A process's start time (clock ticks after boot, /proc/PID/stat field 22); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # fields after the command name, which may hold spaces


# The plan of the sweep `gdexp resume` is running again in this process (None otherwise):
# the sweeper then reuses its parent run and runs only the configs without a FINISHED run.
_resuming: list[tuple[Plan, frozenset[str]]] = []


@contextmanager
def resuming(plan: Plan, finished: frozenset[str]):
    """For the block: the sweep started in this process continues `plan`, skipping `finished` config hashes."""
    _resuming.append((plan, finished))
    try:
        yield
    finally:
        _resuming.pop()


def resumed() -> tuple[Plan, frozenset[str]] | None:
    """(the plan, the config hashes already FINISHED) when this process resumes a sweep, else None."""
    return _resuming[-1] if _resuming else None
