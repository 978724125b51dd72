"""Runs that share a loss and an optimizer descend together, as rows of one vectorized batch."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gdexp.core.descent import Options, Progress, descend
from gdexp.specs import halving
from gdexp.core.params import switches
from gdexp.core.result import Result
from gdexp.specs.run_spec import RunSpec
from gdexp.core.stopping import StoppingRules
from gdexp.core.threads import descent_threads, limited_threads

# The curve records one chunk of runs may hold at once (chunks): a sweep's peak memory is about
# this plus what the process holds anyway (~0.5 GB with MLflow and Hydra imported).
CHUNK_BYTES = 512 * 2**20

# chunks(watch=...): a batch's indices into the specs -> its descent's callback (or None).
Watch = Callable[[list[int]], Callable[[Progress], None] | None]


def execute(specs: list[RunSpec], watch: Watch | None = None) -> list[Result]:
    """Descend every run, batching runs with equal ``batch_key``; the first error is raised
    (watch: as for `chunks`)."""
    out = execute_isolated(specs, watch)
    for outcome in out:
        if isinstance(outcome, Exception):
            raise outcome
    return out


def execute_isolated(specs: list[RunSpec], watch: Watch | None = None) -> list[Result | Exception]:
    """Like execute, but a run that raises yields its error and the others still run."""
    out: list[Result | Exception | None] = [None] * len(specs)
    for rows, outcomes in chunks(specs, watch=watch):
        for i, outcome in zip(rows, outcomes):
            out[i] = outcome
    return out


def chunks(specs: list[RunSpec], budget: int = CHUNK_BYTES, watch: Watch | None = None):
    """Descend the runs chunk by chunk: yields (indices into specs, outcomes) for each chunk.

    Runs with equal batch_key descend together, in chunks of as many rows as fit `budget`
    bytes of curve records (memory_bytes), so a sweep's peak memory is bounded by one
    chunk however many runs it has; rows being independent, the results are bit-identical
    to one batch of every run. Under successive halving (``stopping.prune=halving``) a row's
    fate depends on its group's other rows, so a chunk never splits a group: a batch's rows
    are ordered group by group and cut only between groups (a group larger than the budget
    descends as one chunk), and the decisions are those of one batch of every run.
    A chunk that raises is descended again one row at a time,
    so only the runs that fail on their own get the error: a batched sweep records the
    same outcomes as one run at a time. A run's outcome is its Result or its exception.

    watch: called with a batch's indices into specs just before it descends (again, one row
    at a time, after a batch that raised); what it returns, if not None, is the descent's
    `callback` (gdexp.core.descent.descend), its rows in that order.
    """
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(spec.batch_key, []).append(i)
    threads = descent_threads()  # raises for a bad GDEXP_BLAS_THREADS before any run descends
    for rows in groups.values():
        size = max(1, budget // max(1, specs[rows[0]].memory_bytes))
        for part in _cut(rows, size, specs):
            with limited_threads(threads):  # one BLAS thread by default: gdexp.core.threads
                try:
                    outcomes = descend_batch([specs[i] for i in part], callback=watch and watch(part))
                except Exception as exc:
                    outcomes = [exc] if len(part) == 1 else [_alone(specs[i], watch and watch([i])) for i in part]
            yield part, outcomes


def _cut(rows: list[int], size: int, specs: list[RunSpec]) -> list[list[int]]:
    """A batch's rows in chunks of at most `size`; under successive halving whole pruning
    groups only (gdexp.specs.halving.group_key), packed in order of first appearance."""
    if specs[rows[0]].config["stopping"].get("prune", "none") == "none":
        return [rows[start:start + size] for start in range(0, len(rows), size)]
    by_group: dict[str, list[int]] = {}
    for i in rows:
        by_group.setdefault(halving.group_key(specs[i].config), []).append(i)
    out: list[list[int]] = []
    for members in by_group.values():
        if out and len(out[-1]) + len(members) <= size:
            out[-1].extend(members)
        else:
            out.append(list(members))
    return out


def descend_batch(batch: list[RunSpec], prune=None,
                  callback: Callable[[Progress], None] | None = None) -> list[Result]:
    """One vectorized descent over runs of equal batch_key: each row its own
    hyper-parameters, schedule values, seed, start point and stopping rules
    (callback: see gdexp.core.descent.descend).

    `prune`: the pruner (gdexp.core.pruning) instead of the one the configs ask for
    (`gdexp rerun` replays a pruned run's prune step with pruning.Replay)."""
    target = batch[0].optimizer.target
    optimizer = target(**_stacked([s.optimizer.params for s in batch], shared=switches(target)))
    x0 = np.stack([s.x0 for s in batch])
    rules = StoppingRules.of([s.config["stopping"] for s in batch])
    tracking = batch[0].config.get("tracking") or {}
    options = Options(schedule=_schedule(batch, rules), batch_size=batch[0].config["loss"].get("batch_size"),
                      seeds=np.array([s.config["seed"] for s in batch], dtype=np.int64),
                      eval_every=int(tracking.get("eval_every", 0) or 0),
                      sharpness_every=int(tracking.get("sharpness_every", 0) or 0),
                      prune=prune if prune is not None else halving.of([s.config for s in batch]))
    return descend(batch[0].loss, optimizer, x0, rules, options, callback)


def _schedule(batch: list[RunSpec], rules: StoppingRules):
    if batch[0].constant_rate:
        return None
    params = [s.schedule.params for s in batch]
    shared = tuple(k for k, v in params[0].items() if not _number_like(v))
    return batch[0].schedule.target(**_stacked(params, shared=shared), maxiter=rules.maxiter)


def _stacked(rows: list[dict], shared: tuple[str, ...]) -> dict:
    """Keyword arguments for a batch: numbers (and lists of numbers) stacked row by row into
    (B,) (or (B, k)) arrays; the `shared` keys taken from the first row (equal in a batch)."""
    return {k: (v if k in shared else np.array([r[k] for r in rows], dtype=float)) for k, v in rows[0].items()}


def _number_like(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_number_like(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _alone(spec: RunSpec, callback=None) -> Result | Exception:
    try:
        return descend_batch([spec], callback=callback)[0]
    except Exception as exc:
        return exc
