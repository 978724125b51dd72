"""The descent loop: a batch of runs, one row each, every row stopping on its own.

numpy only. A row's arithmetic never mixes with other rows (the losses and
optimizers promise that too), so a run gives bit-identical curves alone or
inside any batch. `descend` is the fast loop; `descend_reference` states the
same semantics one run and one step at a time, and tests hold the two equal
bit for bit.

Per step t = 0, 1, ... of each run (step 0 is the start):

1. with mini-batches, the run's batch for step t is drawn (gdexp.core.minibatch);
2. the loss and its gradient at x_t (on that batch) are recorded with x_t;
3. at steps that are multiples of `eval_every` (and 0), the loss's evaluation
   metrics (val_loss, ...) and, with mini-batches, the full training loss;
   at multiples of `sharpness_every`, the Hessian's top eigenvalue;
4. the stopping rules (gdexp.core.stopping), in the order of
   gdexp.core.outcomes.STOP_REASONS; with mini-batches the divergence
   threshold applies to the full loss at evaluation steps, and a non-finite
   mini-batch loss still diverges at once;
5. at a rung of successive halving (Options.prune, gdexp.core.pruning), the
   rows still running are judged and the worse stop as ``pruned``;
6. otherwise the update: the schedule sets the rate (and cycled momentum) of
   update t + 1 (gdexp.core.schedules), then x_{t+1} = x_t + update.

One loop for any array library (gdexp.core.arrays): a loss whose parameters
are torch tensors (gdexp.specs.torch_loss) descends here too. Its x,
gradients and optimizer state stay on their device; each block's curves (and,
for the stopping rules, which rows had a non-finite x) come back to the host
at once; schedules and the stopping rules compute on the host, as for numpy.
"""
# Kept whole (over ~300 lines): the fast loop's named steps beside descend_reference, their spec.
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gdexp.core.arrays import is_numpy, like, namespace, to_host
from gdexp.core.minibatch import MinibatchSampler
from gdexp.core.outcomes import DIVERGED, STATUS_OF_REASON, STOP_REASONS
from gdexp.core.result import Result
from gdexp.core.schedules import Schedule
from gdexp.core.sharpness import sharpness
from gdexp.core.stability import stability_threshold
from gdexp.core.stopping import StoppingRules

_RUNNING = 0  # STOP_REASONS[0]: the row is still running
_REASON = {name: code for code, name in enumerate(STOP_REASONS)}
_DIVERGED = [code for code, name in enumerate(STOP_REASONS) if STATUS_OF_REASON.get(name) == DIVERGED]

# Parameters are kept at every step only while they are few enough to plot.
MAX_TRACKED_DIM = 10

# Steps per block between checks of the stopping rules (see descend).
_BLOCK = 32
# A block of another library's x keeps every step's x on its device (the stop step's x is read back
# from it); at most this many bytes of it, else shorter blocks.
_DEVICE_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Options:
    """What a batch does besides plain full-batch descent at a constant rate (all off by default).

    Attributes:
        schedule: a learning-rate schedule (gdexp.core.schedules); None or `constant` = none.
        batch_size: mini-batch size for a loss with data (`n_data`); None = full batch.
        seeds: (B,) the runs' seeds, which draw their mini-batches.
        eval_every: steps between evaluations (the loss's `eval_metrics`, and the full
            training loss under mini-batches); 0 = at the start and the end only.
        sharpness_every: steps between measurements of the sharpness (0 = never).
        prune: successive halving over the batch's rows (gdexp.core.pruning.Halving), or None.
    """

    schedule: Schedule | None = None
    batch_size: int | None = None
    seeds: np.ndarray | None = None
    eval_every: int = 0
    sharpness_every: int = 0
    prune: object | None = None


def descend(loss, optimizer, x0: np.ndarray, rules: StoppingRules, options: Options = Options(),
            callback: Callable[[Progress], None] | None = None) -> list[Result]:
    """Run gradient descent on every row of x0 until each row stops.

    Args:
        loss: a gdexp Loss (value_and_grad over (B, dim) points).
        optimizer: a gdexp.core.optimizers Optimizer, its hyper-parameters per row.
        x0: (B, dim) start points; a loss with ``as_params`` (a torch network) turns them
            into its own arrays, on its device.
        rules: per-row stopping rules.
        options: schedule, mini-batches, evaluations, sharpness.
        callback: called with a `Progress` after every block of steps (at most _BLOCK = 32
            steps; one step where the rules need every step), the last time once every row has
            stopped; it must be cheap and must not change the arrays it sees (autograd's
            `sgd(..., callback=None)`: logging stays out of the loop).

    Returns:
        One Result per row, in row order.
    """
    as_params = getattr(loss, "as_params", None)
    x = np.array(x0, dtype=float) if as_params is None else as_params(x0)
    run = _Batch(loss, optimizer, x, rules, options)
    # Diverged rows produce inf/nan on purpose: that is data, not a warning.
    with np.errstate(all="ignore"):
        run.start()
        t0 = 0
        while run.running():
            t1 = run.block_end(t0)
            run.steps(t0, t1)
            run.check(t0, t1)
            run.halve(t1)
            if callback is not None:
                callback(Progress(run, t1))
            t0 = t1 + 1
        run.finish()
    return run.results()


class Progress:
    """A batch's descent as a `descend` callback sees it after a block of steps: read-only views,
    each computed when asked (a callback that only looks at the clock costs nothing else).

    Attributes:
        step: the last step done by the rows still running in that block.
        size: B, the rows of the batch.
        running: how many rows are still running.
    """

    def __init__(self, run: "_Batch", step: int):
        self._run, self.step, self.size, self.running = run, step, run.B, len(run.f)
        self._work_row: np.ndarray | None = None  # batch row -> its row in the work arrays (x)

    @property
    def stopped(self) -> np.ndarray:
        """(B,) bool, whether each row has stopped."""
        return self._run.reason != _RUNNING

    @property
    def diverged(self) -> np.ndarray:
        """(B,) bool, whether each row has stopped diverged."""
        return np.isin(self._run.reason, _DIVERGED)

    @property
    def stop_step(self) -> np.ndarray:
        """(B,) each stopped row's stop step (meaningless for a running row)."""
        return self._run.stop_step

    def result(self, i: int) -> Result:
        """Row i's curves so far: a stopped row's Result (without the evaluation at its stop step,
        which comes after the loop), or for a running row a Result of status ``running`` up to
        `step` (its x the point at `step`)."""
        run = self._run
        if run.reason[i] != _RUNNING:
            return run._result(i)
        last = self.step
        if self._work_row is None:
            self._work_row = np.full(run.B, -1)
            self._work_row[np.arange(run.B)[run.rows]] = np.arange(self.running)
        return Result(status=STOP_REASONS[_RUNNING], stop_reason=STOP_REASONS[_RUNNING], iterations=last,
                      loss=run.losses[: last + 1, i], grad_norm=run.gnorms[: last + 1, i],
                      path=None if run.params is None else run.params[: last + 1, i], x=run.x[self._work_row[i]],
                      lr=None if run.lrs is None else run.lrs[: last + 1, i], events=run._row_events(i, last))


class _Batch:
    """The state of one vectorized descent; `descend` calls its steps in order.

    Work arrays hold only the rows still running; `rows` maps them back to the
    batch (a slice while none has stopped: cheaper to index than an array).
    """

    def __init__(self, loss, optimizer, x: np.ndarray, rules: StoppingRules, options: Options):
        self.loss, self.optimizer, self.x, self.options = loss, optimizer, x, options
        self.on_host = is_numpy(x)  # numpy: every array below on the host, the loop as it always was
        B, dim = x.shape
        self.B, self.dim = B, dim
        self.schedule = None if options.schedule is None or options.schedule.is_constant else options.schedule
        self.sampler = None
        if options.batch_size is not None and getattr(loss, "n_data", None):
            sampler = MinibatchSampler(loss.n_data, options.batch_size, options.seeds)
            self.sampler = None if sampler.full_batch else sampler
        self.evaluates = hasattr(loss, "eval_metrics") or self.sampler is not None
        steps = int(rules.maxiter.max())
        # np.empty, not full: a row's entries past its stop are never read, and
        # filling 300 MB of a 1,000-run sweep with NaN costs more than its descent.
        self.losses = np.empty((steps + 1, B))
        self.gnorms = np.empty((steps + 1, B))
        self.params = np.empty((steps + 1, B, dim)) if dim <= MAX_TRACKED_DIM else None
        self.lrs = np.empty((steps + 1, B)) if self.schedule is not None else None
        self.events: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {}  # name -> [(step, rows, values)]
        self.final_x = np.full((B, dim), np.nan)
        self.reason = np.zeros(B, dtype=np.int8)
        self.stop_step = np.zeros(B, dtype=np.int64)
        self.rows: slice | np.ndarray = slice(None)
        self.rules = rules
        self.vector = None  # the sharpness's warm start
        self.pvector = None  # the preconditioned sharpness's
        self.flags_nonfinite_x = getattr(loss, "flags_nonfinite_x", False)

    # -- the named steps of `descend` -------------------------------------------------

    def start(self) -> None:
        """Step 0: the optimizer's and schedule's states, the first gradient, the thresholds."""
        self.state = self.optimizer.init(self.x)
        if self.schedule is not None:
            # Schedules compute (B, 1) values on the host; their base rates are the config's, in float64.
            host = self.state if self.on_host else self.optimizer.init(np.zeros((self.B, 1)))
            self.sched = self.schedule.init(host)
        else:
            self.sched = None
        self.sched_now = None
        self.f, self.g = self._gradient(0)
        reference = to_host(self.loss.value(self.x) if self.sampler is not None else self.f)
        self.live = {
            "threshold": self.rules.divergence_factor * np.abs(reference),
            "best": to_host(self.f).copy(),
            "low": np.full(self.B, np.inf),  # the lowest loss before the current block (grad_undefined)
            "wait": np.zeros(self.B, dtype=np.int64),
            "gtol": self.rules.gtol, "patience": self.rules.patience,
            "min_delta": self.rules.min_delta, "maxiter": self.rules.maxiter,
            "early_stop_threshold": self.rules.early_stop_threshold,
            "prior_best": np.full(self.B, np.inf),  # the best loss of the steps before the block
        }
        self.uses_early_stop = bool((self.rules.early_stop_threshold > 0).any())
        self.uses_patience = bool((self.rules.patience > 0).any())
        # Steps run in blocks, and the stopping rules are checked once per
        # block over its recorded curves: per step, the checks cost a 2-D
        # sweep as much as its arithmetic. A row that stopped inside a block
        # runs on to the block's end; its stop step, reason and final point
        # are read back from the record, and its extra steps (never read) cost
        # nothing else, rows being independent. Patience needs its counter at
        # every step, and the x check needs x at every step (not recorded
        # above MAX_TRACKED_DIM): those runs check every step.
        self.block = 1 if self.uses_patience or self.params is None else _BLOCK
        if not self.on_host and not self.uses_patience:  # each step's x kept on the device instead
            nbytes = self.B * self.dim * namespace(self.x).finfo(self.x.dtype).bits // 8
            self.block = int(max(1, min(_BLOCK, _DEVICE_BLOCK_BYTES // max(nbytes, 1))))
        self.budget_end = int(self.rules.maxiter.min())
        self.every = [k for k in (self.options.eval_every if self.evaluates else 0,
                                  self.options.sharpness_every) if k > 0]
        prune = self.options.prune
        self.rungs = prune.rungs(int(self.rules.maxiter.max())) if prune is not None else []

    def running(self) -> bool:
        return len(self.f) > 0

    def block_end(self, t0: int) -> int:
        """The last step of the block from t0: never past the first budget end (no row runs past
        its own maxiter, so the record arrays never overflow), and ending on every event step."""
        t1 = min(t0 + self.block - 1, self.budget_end)
        for k in self.every:
            t1 = min(t1, -(-t0 // k) * k)
        rung = next((r for r in self.rungs if r >= t0), None)
        if rung is not None:
            t1 = min(t1, rung)
        if self.evaluates and t0 == 0:
            t1 = 0
        return t1

    def steps(self, t0: int, t1: int) -> None:
        """Steps t0..t1 of the running rows: update (t > 0), gradient, record."""
        rec_f, rec_g, rec_x, rec_lr = self._block_records(t0, t1)
        for j, t in enumerate(range(t0, t1 + 1)):
            if t:
                self._update(t)
                self.f, self.g = self._gradient(t)
            rec_f[j] = self.f
            # Squared norms here, one sqrt per block below (elementwise: the same values).
            _sq_norm(self.g, out=rec_g[j])
            if rec_x is not None:
                rec_x[j] = self.x
            if rec_lr is not None:
                # The rate of the update that led to step t (step 0: the first update's).
                rec_lr[j] = (self.sched_now if t else self.schedule.at(0, self.sched))["lr"][:, 0]
            if self.uses_patience and t:
                self._patience(to_host(self.f))
        if not self.on_host:
            rec_f, rec_g, rec_x = self._to_host(rec_f, rec_g, rec_x)
        np.sqrt(rec_g, out=rec_g)
        self.block_record = (rec_f, rec_g, rec_x)
        if not isinstance(self.rows, slice) or not self.on_host:
            self._scatter(t0, t1, rec_f, rec_g, rec_x if self.params is not None else None, rec_lr)

    def _block_records(self, t0: int, t1: int):
        """Where steps t0..t1 record f, the squared gradient norm, x and the rate.

        numpy: straight into the batch's arrays while no row has stopped, else contiguous
        buffers scattered to `rows` once per block. Another library: buffers on x's device
        (x at every step: `_to_host` reads the stop step's x from them), the rate on the host.
        """
        n, steps = len(self.f), t1 - t0 + 1
        rec_lr = None if self.lrs is None else np.empty((steps, n))
        if not self.on_host:
            xp, on = namespace(self.x), dict(dtype=self.x.dtype, device=self.x.device)
            return (xp.empty((steps, n), **on), xp.empty((steps, n), **on),
                    xp.empty((steps, *self.x.shape), **on), rec_lr)
        if isinstance(self.rows, slice):
            return (self.losses[t0:t1 + 1], self.gnorms[t0:t1 + 1],
                    None if self.params is None else self.params[t0:t1 + 1],
                    None if self.lrs is None else self.lrs[t0:t1 + 1])
        return (np.empty((steps, n)), np.empty((steps, n)),
                None if self.params is None else np.empty((steps, n, self.dim)), rec_lr)

    def _to_host(self, rec_f, rec_g, block_x):
        """A device block's records as float64 host arrays. x comes whole only where it is tracked
        (dim <= MAX_TRACKED_DIM); else as one coordinate per row and step, nan where x has a nan,
        else inf where it has an inf, else 0: all the stopping rules read of x. The device's
        block of x is kept (`block_x`) for the stop step's x."""
        xp = namespace(block_x)
        self.block_x = block_x
        if self.params is not None:
            x = to_host(block_x)
        elif bool(xp.isfinite(xp.sum(block_x))):
            # The usual block, in one cheap pass: a nan or inf anywhere makes the sum non-finite
            # (a finite sum means every entry is finite; an overflowing one takes the exact path).
            x = np.zeros((*block_x.shape[:2], 1))
        else:
            x = to_host(xp.where(xp.any(xp.isnan(block_x), axis=2), np.nan,
                                 xp.where(xp.any(xp.isinf(block_x), axis=2), np.inf, 0.0)))[..., None]
        return (to_host(rec_f).astype(np.float64), to_host(rec_g).astype(np.float64), x.astype(np.float64))

    def _scatter(self, t0: int, t1: int, rec_f, rec_g, rec_x, rec_lr) -> None:
        """A block's host records into the batch's arrays, at the running rows."""
        self.losses[t0:t1 + 1, self.rows] = rec_f
        self.gnorms[t0:t1 + 1, self.rows] = rec_g
        if rec_lr is not None:
            self.lrs[t0:t1 + 1, self.rows] = rec_lr
        if rec_x is not None:
            # One coordinate at a time: numpy scatters (steps, rows) of doubles
            # 4x faster than (steps, rows, dim).
            for d in range(self.dim):
                self.params[t0:t1 + 1, self.rows, d] = rec_x[..., d]

    def _update(self, t: int) -> None:
        """Update t: the schedule's values for it (sent to x's device), then x <- x + the optimizer's update."""
        if self.sched is not None:
            self.sched_now = now = self.schedule.at(t - 1, self.sched)
            self.state = {**self.state, **(now if self.on_host else {k: like(v, self.x) for k, v in now.items()})}
        updates, self.state = self.optimizer.update(self.g, self.state, self.x)
        self.x = self.x + updates

    def _patience(self, f: np.ndarray) -> None:
        improved = f < self.live["best"] - self.live["min_delta"]
        self.live["best"] = np.where(improved, f, self.live["best"])
        self.live["wait"] = np.where(improved, 0, self.live["wait"] + 1)

    def check(self, t0: int, t1: int) -> None:
        """Events at t1, then the stopping rules over the block; stopped rows leave the work arrays."""
        rec_f, rec_g, rec_x = self.block_record
        prior = None
        if self.uses_early_stop:  # the best loss of the steps before each step of the block
            prior = np.fmin.accumulate(np.concatenate([self.live["prior_best"][None], rec_f[:-1]]), axis=0)
            self.live["prior_best"] = np.fmin(prior[-1], rec_f[-1])
        low = self.live["low"]
        self.live["low"] = np.fmin(low, np.fmin.reduce(rec_f, axis=0))
        full_loss = self._events(t1)
        diverged_full = None
        if full_loss is not None:  # mini-batches: the threshold is the full loss's
            diverged_full = full_loss > self.live["threshold"]
        if (t1 < self.budget_end and not (diverged_full is not None and diverged_full.any())
                and not _may_stop(rec_f, rec_g, self.live, self.uses_patience, self.sampler is None, prior)
                and (self.flags_nonfinite_x or np.isfinite(self.x if rec_x is None else rec_x).all())):
            return
        # Each row's reason at each step of the block, from the recorded x
        # (or, in one-step blocks without a record, x now).
        why = _stop_reasons(t0, rec_f, rec_g, self.x[None] if rec_x is None else rec_x, {**self.live, "low": low},
                            threshold_on_f=self.sampler is None, prior=prior)
        if diverged_full is not None:
            last = why[-1]
            worse = diverged_full & ((last == _RUNNING) | (last > _REASON["threshold"]))
            last[worse] = _REASON["threshold"]
        done = (why != _RUNNING).any(axis=0)
        if not done.any():
            return
        cols = np.flatnonzero(done)
        first = (why[:, cols] != _RUNNING).argmax(axis=0)  # the step each stopped at
        index = np.arange(self.B)[self.rows][cols]
        self.reason[index] = why[first, cols]
        self.stop_step[index] = t0 + first
        if not self.on_host:  # the device's block of x: the stop step's x
            xp = namespace(self.x)
            at = (xp.asarray(first, device=self.x.device), xp.asarray(cols, device=self.x.device))
            self.final_x[index] = to_host(self.block_x[at])
        else:
            self.final_x[index] = self.x[cols] if rec_x is None else rec_x[first, cols]
        self._drop(~done)

    def halve(self, t: int) -> None:
        """At a rung of successive halving: the running rows the rung does not keep stop, pruned."""
        if t not in self.rungs or not self.running():
            return
        index = np.arange(self.B)[self.rows]
        current = self.f
        higher = False
        if self.evaluates:
            values = self._evaluate(self.x)
            name, higher = next(((n, h) for n, h in self.options.prune.monitored if n in values), (None, False))
            current = self.f if name is None else values[name]
        value, running = np.full(self.B, np.nan), np.zeros(self.B, dtype=bool)
        value[index], running[index] = current, True
        spoiled = np.isin(self.reason, [code for code, name in enumerate(STOP_REASONS)
                                        if STATUS_OF_REASON.get(name) == DIVERGED])
        keep = self.options.prune.survivors(value, higher, running, spoiled)[index]
        if keep.all():
            return
        cols = np.flatnonzero(~keep)
        self.reason[index[cols]] = _REASON["halving"]
        self.stop_step[index[cols]] = t
        self.final_x[index[cols]] = self.x[cols]
        self._drop(keep)

    def finish(self) -> None:
        """Each run's evaluation at its stop step (where the last event did not fall on it)."""
        if not self.evaluates:
            return
        values = self._evaluate(self.final_x)
        for name, column in values.items():
            self.events.setdefault(name, []).append((-1, np.arange(self.B), column))

    def results(self) -> list[Result]:
        return [self._result(i) for i in range(self.B)]

    # -- helpers ------------------------------------------------------------------------

    def _gradient(self, t: int):
        batch = self.sampler.at(t) if self.sampler is not None else None
        return self.loss.value_and_grad(self.x) if batch is None else self.loss.value_and_grad(self.x, batch)

    def _events(self, t: int) -> np.ndarray | None:
        """Evaluations and sharpness due at step t on the running rows; the full training loss
        under mini-batches (None otherwise, or when no evaluation is due)."""
        index = np.arange(self.B)[self.rows]
        full = None
        k = self.options.eval_every
        if self.evaluates and (t == 0 or (k and t % k == 0)):
            values = self._evaluate(self.x)
            for name, column in values.items():
                self.events.setdefault(name, []).append((t, index, column))
            full = values.get("train_loss") if self.sampler is not None else None
        k = self.options.sharpness_every
        if k and t % k == 0:
            # Lanczos runs on the host; the loss's Hessian-vector products where its x lives.
            found = sharpness(self.loss, to_host(self.x), self.vector)
            self.vector = found.v
            self.events.setdefault("sharpness", []).append((t, index, found.lam))
            lr = to_host(self.state["lr"])[:, 0] if self.sched is None else self.schedule.at(t, self.sched)["lr"][:, 0]
            self.events.setdefault("2/lr", []).append((t, index, 2.0 / np.broadcast_to(lr, found.lam.shape)))
            host_state = {k: to_host(v) for k, v in self.state.items()}  # (a sharpness step only)
            edge, self.pvector = _edge_of_stability(self.optimizer.name, host_state, lr, self.loss, to_host(self.x),
                                                    t, self.pvector)
            for name, values in edge.items():
                self.events.setdefault(name, []).append((t, index, values))
        return full

    def _evaluate(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = dict(self.loss.eval_metrics(x)) if hasattr(self.loss, "eval_metrics") else {}
        if self.sampler is not None and "train_loss" not in values:
            values["train_loss"] = self.loss.value(x)
        return values

    def _drop(self, keep: np.ndarray) -> None:
        self.rows = np.arange(self.B)[self.rows][keep]
        here = keep if self.on_host else namespace(self.x).asarray(keep, device=self.x.device)
        self.x, self.f, self.g = self.x[here], self.f[here], self.g[here]
        self.state = {k: v[here] for k, v in self.state.items()}
        self.live = {k: v[keep] for k, v in self.live.items()}
        if self.sched is not None:
            self.sched = {k: v[keep] for k, v in self.sched.items()}
        if self.sampler is not None:
            self.sampler = self.sampler.take(keep)
        if self.vector is not None:
            self.vector = self.vector[keep]
        if self.pvector is not None:
            self.pvector = self.pvector[keep]
        if len(self.f):
            self.budget_end = int(self.live["maxiter"].min())

    def _result(self, i: int) -> Result:
        last = int(self.stop_step[i])
        reason = STOP_REASONS[self.reason[i]]
        # Views into the batch's arrays, not copies: 3,000 strided copies cost a
        # 1,000-run sweep more than a third of its descent.
        return Result(
            status=STATUS_OF_REASON[reason], stop_reason=reason, iterations=last,
            loss=self.losses[: last + 1, i], grad_norm=self.gnorms[: last + 1, i],
            path=None if self.params is None else self.params[: last + 1, i], x=self.final_x[i],
            lr=None if self.lrs is None else self.lrs[: last + 1, i],
            events=self._row_events(i, last))

    def _row_events(self, i: int, last: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for name, points in self.events.items():
            steps, values = [], []
            for step, index, column in points:
                at = np.flatnonzero(index == i)
                if not at.size or step > last:
                    continue
                step = last if step < 0 else step
                if steps and steps[-1] == step:  # the stop step fell on an event step
                    continue
                steps.append(step)
                values.append(float(column[at[0]]))
            if steps:
                out[name] = (np.array(steps, dtype=np.int64), np.array(values))
        return out


def descend_reference(loss, optimizer, x0: np.ndarray, rules: dict, options: Options = Options()) -> Result:
    """One run, one step at a time, every rule checked at every step: the semantics `descend`
    implements, in the plainest code (tests hold the two bit-identical).

    Args:
        x0: (dim,) the start.
        rules: one row's stopping rules (a ``stopping`` config dict).
        options: as for descend, with `seeds` of length 1.
    """
    x = np.asarray(x0, dtype=float)[None]
    schedule = None if options.schedule is None or options.schedule.is_constant else options.schedule
    sampler = None
    if options.batch_size is not None and getattr(loss, "n_data", None):
        sampler = MinibatchSampler(loss.n_data, options.batch_size, options.seeds)
        sampler = None if sampler.full_batch else sampler
    evaluates = hasattr(loss, "eval_metrics") or sampler is not None

    def gradient(t):
        batch = sampler.at(t) if sampler is not None else None
        return loss.value_and_grad(x) if batch is None else loss.value_and_grad(x, batch)

    def evaluate(at):
        values = dict(loss.eval_metrics(at)) if hasattr(loss, "eval_metrics") else {}
        if sampler is not None and "train_loss" not in values:
            values["train_loss"] = loss.value(at)
        return values

    with np.errstate(all="ignore"):
        state = optimizer.init(x)
        sched = schedule.init(state) if schedule is not None else None
        f, g = gradient(0)
        start = loss.value(x)[0] if sampler is not None else f[0]
        threshold, best, wait, low = rules["divergence_factor"] * abs(start), f[0], 0, np.inf
        early_stop, prior_best = rules.get("early_stop_threshold", 0.0), np.inf
        curves, lrs, events, vector, pvector = [], [], {}, None, None
        for t in range(rules["maxiter"] + 1):
            if t:
                if sched is not None:
                    state = {**state, **schedule.at(t - 1, sched)}
                updates, state = optimizer.update(g, state, x)
                x = x + updates
                f, g = gradient(t)
            fv, gn = f[0], np.sqrt(np.einsum("ij,ij->i", g, g))[0]
            curves.append((fv, gn, x[0]))
            if schedule is not None:
                lrs.append(schedule.at(max(t - 1, 0), sched)["lr"][0, 0])
            if t and rules["patience"]:
                best, wait = (fv, 0) if fv < best - rules["min_delta"] else (best, wait + 1)
            full = None
            if evaluates and (t == 0 or (options.eval_every and t % options.eval_every == 0)):
                for name, value in evaluate(x).items():
                    events.setdefault(name, []).append((t, float(value[0])))
                full = events["train_loss"][-1][1] if sampler is not None else None
            if options.sharpness_every and t % options.sharpness_every == 0:
                found = sharpness(loss, x, vector)
                vector = found.v
                events.setdefault("sharpness", []).append((t, float(found.lam[0])))
                lr = state["lr"][0, 0] if sched is None else schedule.at(t, sched)["lr"][0, 0]
                events.setdefault("2/lr", []).append((t, 2.0 / lr))
                edge, pvector = _edge_of_stability(optimizer.name, state, np.array([lr]), loss, x, t, pvector)
                for name, values in edge.items():
                    events.setdefault(name, []).append((t, float(values[0])))
            values = np.concatenate([[fv, gn], x[0]])
            passed_best = bool(early_stop > 0 and fv > early_stop * prior_best)
            prior_best = np.fmin(prior_best, fv)
            over = (fv > threshold) if sampler is None else (full is not None and full > threshold)
            undefined = np.isfinite(fv) and not np.isfinite(gn) and np.isfinite(x).all() and not fv > low
            low = np.fmin(low, fv)
            for reason, fired in [("grad_undefined", undefined), ("nan", np.isnan(values).any()),
                                  ("inf", np.isinf(values).any()), ("threshold", over),
                                  ("early_stop_threshold", passed_best),
                                  ("stationary", t == 0 and gn < rules["gtol"]), ("grad_tol", gn < rules["gtol"]),
                                  ("patience", rules["patience"] and wait >= rules["patience"]),
                                  ("max_iters", t >= rules["maxiter"])]:
                if fired:
                    if evaluates:
                        for name, value in evaluate(x).items():
                            if not events.get(name) or events[name][-1][0] != t:
                                events.setdefault(name, []).append((t, float(value[0])))
                    loss_c, gn_c, x_c = (np.array(c) for c in zip(*curves))
                    return Result(
                        status=STATUS_OF_REASON[reason], stop_reason=reason, iterations=t, loss=loss_c,
                        grad_norm=gn_c, path=x_c if x.shape[1] <= MAX_TRACKED_DIM else None, x=x[0],
                        lr=np.array(lrs) if schedule is not None else None,
                        events={k: (np.array([s for s, _ in v], dtype=np.int64), np.array([w for _, w in v]))
                                for k, v in events.items()})
    raise AssertionError("maxiter always stops a run")


def _edge_of_stability(name: str, state: dict, lr: np.ndarray, loss, x: np.ndarray, t: int, pvector):
    """What a run's sharpness is compared with at step t (``stability_threshold``: 2/lr for gd,
    gdexp.core.stability.stability_threshold for the others) and, for Adam and RMSprop, the
    ``preconditioned_sharpness``: the top eigenvalue of P^-1 H with the optimizer's own
    preconditioner P = diag(sqrt(v_hat) + eps) at that step (Cohen et al. 2022). At step 0 P is
    eps alone (no gradient seen yet): NaN there. Returns (name -> (rows,) values, warm start)."""
    hyper = {k: v[:, 0] for k, v in state.items() if v.ndim == 2 and v.shape[1] == 1}
    threshold = stability_threshold(name, hyper, lr)
    out = {} if threshold is None else {"stability_threshold": np.broadcast_to(threshold, lr.shape).astype(float)}
    p = _preconditioner(name, state)
    if p is None:
        return out, pvector
    found = sharpness(loss, x, pvector, preconditioner=p)
    out["preconditioned_sharpness"] = np.where(t > 0, found.lam, np.nan)
    return out, found.v


def _preconditioner(name: str, state: dict) -> np.ndarray | None:
    """(B, d) the diagonal P that Adam and RMSprop divide the step by, from their state (torch's)."""
    if name == "adam":
        second = state.get("max_exp_avg_sq", state["exp_avg_sq"])
        step = np.maximum(state["step"], 1)
        return np.sqrt(second) / np.sqrt(1 - state["beta2"] ** step) + state["eps"]
    if name == "rmsprop":
        square = state["square_avg"]
        if "grad_avg" in state:
            square = square - state["grad_avg"] ** 2
        return np.sqrt(square) + state["eps"]
    return None


def _sq_norm(g: np.ndarray, out: np.ndarray) -> None:
    """Each row's squared norm into `out` (of g's library).

    einsum without `optimize` sums each row on its own: bit-identical in any
    batch. For two columns, two products and a sum give einsum's very
    values (tests/core/test_descent.py checks it) at a third of its cost: a 2-D
    sweep spent a quarter of its descent here.
    """
    if not is_numpy(g):
        out[...] = namespace(g).sum(g * g, axis=1)
    elif g.shape[1] == 2:
        a, b = g[:, 0], g[:, 1]
        np.multiply(a, a, out=out)
        np.add(out, b * b, out=out)
    else:
        np.einsum("ij,ij->i", g, g, out=out)


def _may_stop(f, gn, live, uses_patience: bool, threshold_on_f: bool, prior=None) -> bool:
    """A cheap screen of a block of steps, (steps, rows): could any row stop in it (budget aside)?

    f + gn carries every nan and inf of either into one array (it can also
    overflow on huge finite values, which only costs the exact check). A
    non-finite parameter makes the loss non-finite for every loss gdexp ships
    (tests/core/test_descent.py checks it); the exact check looks at x as well.
    """
    if uses_patience and (live["wait"] >= live["patience"]).any():
        return True
    if prior is not None and (_early_stop(f, live, prior)).any():
        return True
    return bool((gn < live["gtol"]).any() or (threshold_on_f and (f > live["threshold"]).any())
                or not np.isfinite(f + gn).all())


def _early_stop(f, live, prior) -> np.ndarray:
    """(steps, rows): the loss passed early_stop_threshold x the best loss of the steps before."""
    threshold = live["early_stop_threshold"]
    return (threshold > 0) & (f > threshold * prior)


def _stop_reasons(t0: int, f, gn, x, live, threshold_on_f: bool = True, prior=None) -> np.ndarray:
    """Each running row's reason to stop at each step t0, t0 + 1, ... of a block (0 = keep going).

    f, gn: (steps, rows); x: (steps, rows, dim). Patience is only checked in
    one-step blocks (its counter is the current step's).
    """
    why = np.zeros(f.shape, dtype=np.int8)
    step = t0 + np.arange(len(f))[:, None]
    # Lowest priority first, so a more serious reason overwrites it.
    why[step >= live["maxiter"]] = _REASON["max_iters"]
    why[np.broadcast_to((live["patience"] > 0) & (live["wait"] >= live["patience"]), f.shape)] = _REASON["patience"]
    why[gn < live["gtol"]] = _REASON["grad_tol"]
    if prior is not None:
        why[_early_stop(f, live, prior)] = _REASON["early_stop_threshold"]
    if threshold_on_f:
        why[f > live["threshold"]] = _REASON["threshold"]
    why[np.isinf(f) | np.isinf(gn) | np.isinf(x).any(axis=-1)] = _REASON["inf"]
    why[np.isnan(f) | np.isnan(gn) | np.isnan(x).any(axis=-1)] = _REASON["nan"]
    why[_grad_undefined(f, gn, x, live["low"])] = _REASON["grad_undefined"]
    why[(step == 0) & (why == _REASON["grad_tol"])] = _REASON["stationary"]
    return why


def _grad_undefined(f, gn, x, low) -> np.ndarray:
    """(steps, rows): the gradient alone is non-finite, at a finite point whose finite loss is no
    worse than every loss before it (`low`: the lowest before the block). The gradient is undefined
    there (a kink: sqrt(x**2 + y**2) at 0 gives 0/0), which is no divergence: the loss did not grow."""
    before = np.fmin.accumulate(np.concatenate([np.broadcast_to(low, f[:1].shape), f[:-1]]), axis=0)
    return np.isfinite(f) & ~np.isfinite(gn) & np.isfinite(x).all(axis=-1) & ~(f > before)
