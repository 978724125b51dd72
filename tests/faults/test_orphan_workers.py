"""kill -9 of a joblib sweep (issue 20, item 2): its worker processes notice that the sweep's
process is gone and stop without writing; none is alive 30 s later and no run is recorded after
the kill. Then `gdexp resume` finishes the sweep: runs lost, duplicated, left RUNNING all 0."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fault_tools import all_runs, census, start_gdexp, stop, wait_for

pytestmark = pytest.mark.faults


def descendants(pid: int) -> set[int]:
    """The processes under `pid` now (from /proc: children, their children, ...)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
@pytest.mark.parametrize("n_jobs, block_s", [(2, 4), (3, 8)])
def test_kill_9_of_a_joblib_sweep_leaves_no_worker_and_no_late_run(gdexp, store, tmp_path, blocking_loss,
                                                                   n_jobs, block_s):
    sweep_dir = tmp_path / "sweep"
    # Every job's descent blocks `block_s` s: a worker that outlived the sweep would then record its run.
    process = start_gdexp("-m", *blocking_loss, "+loss.scale=1,2,3,4,5,6", "stopping.maxiter=50",
                          "hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}", f"hydra.sweep.dir={sweep_dir}",
                          cwd=tmp_path, GDEXP_TEST_BLOCK="*", GDEXP_TEST_BLOCK_S=str(block_s))
    wait_for(lambda: sum(r.info.status == "RUNNING" for r in all_runs(store)) >= 1 + n_jobs, 120,
             "the parent and a run per worker RUNNING")
    workers = descendants(process.pid)
    assert len(workers) >= n_jobs, workers
    assert stop(process, signal.SIGKILL)[0] == -signal.SIGKILL
    killed_at = time.monotonic()
    at_kill = {r.info.run_id: r.info.status for r in all_runs(store)}
    wait_for(lambda: not any(alive(pid) for pid in workers), 30, f"the workers {sorted(workers)} to stop")
    assert time.monotonic() - killed_at < 30
    time.sleep(block_s + 1)  # past the blocked descents: a worker still alive would have recorded its run
    assert {r.info.run_id: r.info.status for r in all_runs(store)} == at_kill  # nothing written after the kill

    code, out, err = gdexp("resume", str(sweep_dir))
    assert code == 0 and "Traceback" not in err, err
    assert {k: v for k, v in census(store, sweep_dir).items() if k != "planned"} == {
        "finished": 6, "lost": 0, "duplicated": 0, "running": 0, "parent": "FINISHED", "active_children": 6}
