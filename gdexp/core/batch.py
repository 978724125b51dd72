"""Runs that share a loss and an optimizer descend together, as rows of one vectorized batch."""
from __future__ import annotations

import numpy as np

from gdexp.core.descent import descend
from gdexp.core.params import switches
from gdexp.core.result import Result
from gdexp.core.spec import RunSpec
from gdexp.core.stopping import StoppingRules


def execute(specs: list[RunSpec]) -> list[Result]:
    """Descend every run, batching runs with equal ``batch_key``; the first error is raised."""
    out = execute_isolated(specs)
    for outcome in out:
        if isinstance(outcome, Exception):
            raise outcome
    return out


def execute_isolated(specs: list[RunSpec]) -> list[Result | Exception]:
    """Like execute, but a run that raises yields its error and the others still run.

    A batch that raises is descended again one row at a time, so only the
    runs that fail on their own get the error: a batched sweep records the
    same outcomes as one run at a time.
    """
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(spec.batch_key, []).append(i)
    out: list[Result | Exception | None] = [None] * len(specs)
    for rows in groups.values():
        try:
            results = descend_batch([specs[i] for i in rows])
        except Exception as exc:
            results = [exc] if len(rows) == 1 else [_alone(specs[i]) for i in rows]
        for i, outcome in zip(rows, results):
            out[i] = outcome
    return out


def descend_batch(batch: list[RunSpec]) -> list[Result]:
    """One vectorized descent over runs of equal batch_key: each row its own
    hyper-parameters, start point and stopping rules."""
    target = batch[0].optimizer.target
    flags = switches(target)
    hyper = {k: (v if k in flags else np.array([s.optimizer.params[k] for s in batch], dtype=float))
             for k, v in batch[0].optimizer.params.items()}
    optimizer = target(**hyper)
    x0 = np.stack([s.x0 for s in batch])
    rules = StoppingRules.of([s.config["stopping"] for s in batch])
    return descend(batch[0].loss, optimizer, x0, rules)


def _alone(spec: RunSpec) -> Result | Exception:
    try:
        return descend_batch([spec])[0]
    except Exception as exc:
        return exc
