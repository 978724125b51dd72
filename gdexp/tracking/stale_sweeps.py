"""Sweeps a dead process left behind: their parent closed KILLED when gdexp next opens the store,
and a new sweep of the same configs told, in one line, how to finish the old one instead.

A sweep killed with kill -9 (or on a machine that went down) leaves its parent run RUNNING for
good: no process will close it. `close_dead` closes every such parent of the experiment (and its
runs still RUNNING) KILLED, as `gdexp resume` does for its own sweep, when the parent's process
(gdexp.pid, gdexp.host, gdexp.process_started tags) is gone from this host; a sweep of another
host is left alone, since this one cannot tell. `say_unfinished` names, for a sweep about to run,
an unfinished (KILLED) sweep whose plan holds the same configs, with its `gdexp resume DIR`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from gdexp.tracking import TAG, plan
from gdexp.tracking.store import search

log = logging.getLogger(__name__)

_OPEN_SWEEPS = f"tags.{TAG}sweep = 'true' and attributes.status != 'FINISHED'"


def close_dead_in(store) -> list[str]:
    """`close_dead` for a Store (gdexp.tracking.store): where its experiment was found by SQL
    (store.fast), the open sweep parents are first looked for in the tables, and MLflow's client
    is opened only when one of them was left by a process that is gone."""
    if store.fast:
        from gdexp.tracking.fast.fence import connect

        with connect(store.uri) as conn:
            rows = conn.execute(_OPEN_PARENTS_SQL, (int(store.experiment_id),)).fetchall()
        parents: dict[str, dict] = {}
        for run_id, key, value in rows:
            parents.setdefault(run_id, {})[key] = value
        if not any(_gone(tags) for tags in parents.values()):
            return []
    return close_dead(store.client, store.experiment_id)


# The tags of the experiment's RUNNING sweep parents that say which process runs them.
_OPEN_PARENTS_SQL = (
    "SELECT t.run_uuid, t.key, t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
    "WHERE r.experiment_id = ? AND r.status = 'RUNNING' AND r.lifecycle_stage = 'active' "
    f"AND t.key IN ('{plan.PID_TAG}', '{plan.HOST_TAG}', '{plan.STARTED_TAG}') AND t.run_uuid IN "
    f"(SELECT s.run_uuid FROM tags s WHERE s.key = '{TAG}sweep' AND s.value = 'true')")


def _gone(tags: dict) -> bool:
    """Whether the process a sweep parent's tags name is gone from this host (False: alive, of
    another host, or not named)."""
    if plan.PID_TAG not in tags or plan.HOST_TAG not in tags:
        return False
    started = tags.get(plan.STARTED_TAG)
    process = {"pid": tags[plan.PID_TAG], "host": tags[plan.HOST_TAG],
               "started": int(started) if started and started.isdigit() else None}
    return plan.process_state(process) == "gone"


def close_dead(cl, experiment_id: str) -> list[str]:
    """Close KILLED the sweep parents of `experiment_id` left RUNNING by a process that is gone
    (and their runs still RUNNING); returns their ids, saying one line for each."""
    closed = []
    for parent in search(cl, [experiment_id], _OPEN_SWEEPS):
        tags = parent.data.tags
        if parent.info.status != "RUNNING" or not _gone(tags):
            continue
        parent_id = parent.info.run_id
        for run in search(cl, [experiment_id], f"tags.mlflow.parentRunId = '{parent_id}' "
                                               "and attributes.status = 'RUNNING'"):
            cl.set_terminated(run.info.run_id, status="KILLED")
        cl.set_terminated(parent_id, status="KILLED")
        closed.append(parent_id)
        log.warning(f"gdexp: sweep {parent_id} was left RUNNING by process {tags[plan.PID_TAG]}, which is gone: "
              "closed KILLED")
    return closed


def say_unfinished_in(store, hashes: list[str]) -> list[str]:
    """`say_unfinished` for a Store: where its experiment was found by SQL (store.fast), MLflow's
    client is opened only when a KILLED sweep's plan holds the same configs."""
    if store.fast:
        from gdexp.tracking.fast.fence import connect

        with connect(store.uri) as conn:
            rows = conn.execute(_KILLED_PARENTS_SQL, (int(store.experiment_id),)).fetchall()
        wanted = frozenset(hashes)
        if not any(_plans_the_same(run_id, folder, wanted) for run_id, folder in rows):
            return []
    return say_unfinished(store.client, store.experiment_id, hashes)


# The sweep folders of the experiment's KILLED sweep parents.
_KILLED_PARENTS_SQL = (
    "SELECT t.run_uuid, t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
    "WHERE r.experiment_id = ? AND r.status = 'KILLED' AND r.lifecycle_stage = 'active' "
    f"AND t.key = '{TAG}sweep_dir' AND t.run_uuid IN "
    f"(SELECT s.run_uuid FROM tags s WHERE s.key = '{TAG}sweep' AND s.value = 'true')")


def _plans_the_same(parent_id: str, folder: str | None, wanted: frozenset) -> bool:
    """Whether the plan in a sweep's folder is that parent's and holds exactly the configs `wanted`."""
    if not folder:
        return False
    try:
        old = plan.read_plan(Path(folder))
    except (OSError, ValueError, TypeError):
        return False  # a folder moved, a plan of another version: nothing to point at
    return old is not None and old.parent_id == parent_id and frozenset(old.hashes()) == wanted


def say_unfinished(cl, experiment_id: str, hashes: list[str]) -> list[str]:
    """One line for each unfinished (KILLED) sweep of `experiment_id` whose plan holds the same
    configs as `hashes` (a sweep about to run): how many of them it finished, and the command
    that finishes it. The new sweep runs all the same. Returns the folders named."""
    wanted = frozenset(hashes)
    named = []
    for parent in search(cl, [experiment_id], _OPEN_SWEEPS):
        folder = parent.data.tags.get(f"{TAG}sweep_dir")
        if parent.info.status != "KILLED" or not _plans_the_same(parent.info.run_id, folder, wanted):
            continue
        parent_id = parent.info.run_id
        done = search(cl, [experiment_id], f"tags.mlflow.parentRunId = '{parent_id}' "
                                           "and attributes.status = 'FINISHED'")
        finished = len({r.data.tags.get(f"{TAG}config_hash") for r in done} & wanted)
        log.warning(f"gdexp: an unfinished sweep of the same {len(wanted)} configs exists ({parent_id}, KILLED, "
                    f"{finished} FINISHED); this starts a new one; to finish that one instead: gdexp resume {folder}")
        named.append(folder)
    return named
