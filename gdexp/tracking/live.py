"""Runs you can watch while they descend: each run's real start and end, and its record written
while it runs (`tracking.live_every`).

A batched sweep hands `Timeline` to gdexp.specs.batch.chunks as its `watch`: every batch gets
a descent callback (gdexp.core.descent.descend) that notes when the batch started and when
each row stopped (the block of steps it stopped in), so each run's MLflow start and end are
its own even inside a vectorized batch. A batch still descending LIVE_START_S after its start
has its runs written RUNNING, with their params, tags and curves so far (sampled as the final
curve is: gdexp.tracking.content.run_metrics); then, every `tracking.live_every` seconds, the
curves of the runs still running and of those that stopped since (with their status tags: a
diverged run shows as diverged). Each write replaces the run's rows (gdexp.tracking.fast,
`replace`), and so does the final record (gdexp.tracking.bulk.write_chunk): the store ends
exactly as without live writes.

Live writes go through the fast path only (SQLite and PostgreSQL stores): MLflow's API cannot
take back a metric point, so on a tracking server the runs appear when their batch ends (their
start and end are still their own). They never cost more than MAX_SHARE of the descent's
time (their cost estimated from the points to write, then measured): a batch of thousands of
runs is first written once it has descended long enough, and less often than every
`live_every` seconds.
A live write that fails says so in one line and turns live writes off for the process; the
sweep goes on. A process killed mid-batch leaves its live runs RUNNING: `gdexp resume` closes
them KILLED and runs their configs again (Ctrl-C and SIGTERM close them KILLED at once).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from gdexp.tracking import content, interrupts

log = logging.getLogger(__name__)

LIVE_START_S = 1.0  # a batch still descending after this long has its runs written RUNNING
MAX_SHARE = 0.1     # live writes take at most this share of a batch's descent time
# A metric point's cost to the store, written live and then deleted by the next write, before
# one is measured: about the fast path's ~6 us a point (benchmarks/bench_write.py).
POINT_COST_S = 10e-6


@dataclass
class Timing:
    """One run's times in ms since the epoch, and its live run's id once written."""

    start: int
    end: int | None = None
    run_id: str | None = None


@dataclass
class Timeline:
    """Each run's descent times, and its live record (see the module docstring).

    Attributes:
        specs: the sweep's runs (RunSpecs), as `chunks` indexes them.
        store_of: the store a run goes to (called once per tracking.uri and experiment, at the
            first live write).
        parent_id: the sweep's parent run.
        then: another descent callback factory to chain (the progress bar), or None.
        off: no live writes, only the times.
    """

    specs: list
    store_of: Callable
    parent_id: str | None = None
    then: Callable | None = None
    off: bool = False  # no live writes (a Hydra callback wants each job's own run; a live write failed)
    times: dict[int, Timing] = field(default_factory=dict)
    stores: dict[tuple, object] = field(default_factory=dict)  # (tracking.uri, experiment) -> Store

    def __call__(self, rows: list[int]):
        """The descent callback of the batch of `rows` (indices into specs), starting now."""
        start = _now_ms()
        for i in rows:
            old = self.times.get(i)  # a row descended again alone keeps its live run
            self.times[i] = Timing(start, run_id=old.run_id if old else None)
        batch = _LiveBatch(self, rows, time.time())
        chained = self.then(rows) if self.then is not None else None
        if chained is None:
            return batch
        return lambda progress: (batch(progress), chained(progress))

    def take(self, rows: list[int]) -> list[Timing]:
        """The times of these runs, now recorded (a run without an end ends now), forgotten here."""
        now = _now_ms()
        out = []
        for i in rows:
            timing = self.times.pop(i, None) or Timing(now)
            timing.end = timing.end or now
            out.append(timing)
        return out


class _LiveBatch:
    """One batch's descent callback: stop times, and the live writes when due."""

    def __init__(self, timeline: Timeline, rows: list[int], started: float):
        self.timeline, self.rows, self.started = timeline, rows, started
        self.running = len(rows)
        specs = [timeline.specs[i] for i in rows]
        every = min(float(s.config["tracking"].get("live_every", 0) or 0) for s in specs)
        self.every = every
        self.due = started + LIVE_START_S if every > 0 else float("inf")
        self.written: set[int] = set()  # rows whose stopped state is in the store
        self.point_cost = POINT_COST_S   # seconds a point, measured by each write
        self.series = 2 + (not specs[0].constant_rate)  # loss, grad_norm (and lr under a schedule)
        self.points = min(int(s.config["tracking"]["curve_points"]) for s in specs)

    def __call__(self, progress) -> None:
        if progress.running != self.running:  # rows stopped in this block: their end is now
            self.running = progress.running
            now = _now_ms()
            for j in progress.stopped.nonzero()[0].tolist():
                timing = self.timeline.times[self.rows[j]]
                if timing.end is None:
                    timing.end = now
        now = time.time()
        if not progress.running or now < self.due or self.timeline.off:
            return
        # Its cost (the points now, written and later deleted) within MAX_SHARE of the descent so far:
        # a chunk of thousands of runs is written only once it has descended long enough.
        points = (len(self.rows) - len(self.written)) * min(self.points, progress.step + 1) * self.series
        if 2 * points * self.point_cost > MAX_SHARE * (now - self.started):
            return
        written = self._write(progress)
        spent = time.time() - now
        if written:
            self.point_cost = spent / written
        self.due = time.time() + max(self.every, spent / MAX_SHARE)

    def _write(self, progress) -> int:
        """The batch's runs as they are now, over what the store had of them; returns the points written."""
        from gdexp.tracking import bulk
        from gdexp.tracking.fast.records import LIVE, RunRecord
        from gdexp.tracking.fast.write import write_runs

        timeline = self.timeline
        stopped = progress.stopped
        groups: dict[str, tuple] = {}
        now = _now_ms()
        for j, i in enumerate(self.rows):
            if j in self.written:
                continue
            spec, timing = timeline.specs[i], timeline.times[i]
            where = (spec.config["tracking"]["uri"], spec.config["tracking"]["experiment"])
            if where not in timeline.stores:
                timeline.stores[where] = timeline.store_of(spec)
            store = timeline.stores[where]
            if not bulk._fast(store):  # the fast path's fence decides (bulk.py)
                continue
            result = progress.result(j)
            tags = content.identity_tags(spec, timeline.parent_id)
            if stopped[j]:
                tags.update(content.status_tags(result))
                self.written.add(j)
            record = RunRecord(store.experiment_id, spec.run_name, tags=tags, params=content.params(spec.config),
                               metrics=content.run_metrics(spec, result, spec.config["tracking"]["curve_points"], now),
                               status=LIVE, start_time=timing.start)
            if timing.run_id is not None:
                record.run_id = timing.run_id
            groups.setdefault(store.uri, (store, []))[1].append((timing, record))
        try:
            for store, pairs in groups.values():
                with interrupts.deferred():
                    write_runs(store.uri, [record for _, record in pairs], replace=True)
                for timing, record in pairs:
                    timing.run_id = record.run_id
        except Exception as exc:  # a live view is a convenience: the sweep goes on without it
            timeline.off = True
            log.warning(f"gdexp: live writes stopped ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                        "the runs are recorded when their batch ends")
        return sum(len(record.metrics) for _, pairs in groups.values() for _, record in pairs)


def _now_ms() -> int:
    return int(time.time() * 1000)
