"""Learning-rate schedules as pure functions of the step, over a batch of runs.

Each schedule equals its torch.optim.lr_scheduler counterpart step by step
(tests/core/test_schedules.py checks all of them against torch to 1e-12): torch
updates most rates recursively (lr <- lr * gamma), gdexp uses the closed forms
torch documents (`_get_closed_form_lr`), which agree to a few ulps per step.

A schedule is a pair of pure functions, as an optimizer is:

- `init(opt_state)` reads the base rate from the optimizer's initial state
  (its "lr" column, as torch's scheduler reads `initial_lr` from the param
  groups) and returns the schedule's own state: (B, 1) or (B, k) columns, so
  finished rows are dropped with `{k: v[keep] for k, v in state.items()}`.
- `at(count, state)` gives the hyper-parameters the optimizer uses for the
  update that follows `count` earlier updates (torch: the values after
  `count` calls of `scheduler.step()`, each call following `optimizer.step()`),
  as (B, 1) columns keyed as in the optimizer's state: "lr", plus "momentum" or
  "beta1" where onecycle cycles it.

The descent sets them before each update, `state = {**state, **at(t - 1, s)}`
for update t = 1, 2, ..., which is torch's semantics for every gdexp
optimizer: torch.optim reads `group["lr"]` (and momentum, betas) afresh at
each `step()`, Adagrad's `lr / (1 + (step - 1) * lr_decay)` included.

Every numeric value is a scalar or a (B,) array, so runs that differ only in
schedule values share a batch; the schedule's name, `milestones`' length,
`cycle_momentum` and `anneal_strategy` are batch-wide.
"""
# Kept whole (over ~300 lines): every schedule beside the others and their row-wise checks, as in optax.
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple

import numpy as np

from gdexp.core.errors import ConfigError
from gdexp.core.params import as_rows, refuse_rows

__all__ = [
    "SCHEDULES", "Schedule", "make_schedule",
    "constant", "step", "multistep", "exponential", "cosine", "warmup_cosine", "onecycle",
]

State = dict[str, np.ndarray]
Count = int | np.ndarray


class Schedule(NamedTuple):
    """A named pair of pure functions: `init(opt_state) -> state`, `at(count, state) -> values`.

    `count` is the number of updates already made (an int, or a (B, 1) int
    column); values are defined for 0 <= count < the run's maxiter. See the
    module docstring for the contract.

    >>> s = make_schedule("step", step_size=2, gamma=0.5)
    >>> state = s.init({"lr": np.array([[0.1], [1.0]])})
    >>> [s.at(t, state)["lr"].ravel().tolist() for t in range(4)]
    [[0.1, 1.0], [0.1, 1.0], [0.05, 0.5], [0.05, 0.5]]
    """

    name: str
    init: Callable[[State], State]
    at: Callable[[Count, State], State]

    @property
    def is_constant(self) -> bool:
        """True for `constant`: the descent skips the schedule entirely (zero cost)."""
        return self.name == "constant"


# ---- validation: every numeric value a scalar or a (B,) array, checked once ----

def _number(key: str, value, ok: Callable[[np.ndarray], np.ndarray], reason: str,
            integer: bool = False, group: str = "schedule") -> np.ndarray:
    """A validated scalar or (B,) float64 array; ConfigError("<group>.<key>", ...) otherwise."""
    key = f"{group}.{key}"
    if isinstance(value, (bool, np.bool_)):
        raise ConfigError(key, value, "must be a number or a (B,) array of numbers")
    arr = as_rows(key, value)
    if integer:
        ok, reason = (lambda v, ok=ok: ok(v) & (v == np.floor(v))), f"must be an integer {reason}"
    refuse_rows(key, value, ~ok(arr), reason)  # NaN fails every comparison, so it is refused too
    return arr


def _positive(key, value):
    return _number(key, value, lambda v: (v > 0) & (v < np.inf), "must be finite and > 0")


def _count(key, value, minimum, group="schedule"):
    return _number(key, value, lambda v: (v >= minimum) & (v < np.inf), f">= {minimum}", integer=True, group=group)


def _maxiter(maxiter, needed_by: str) -> np.ndarray:
    if maxiter is None:
        raise TypeError(f"schedule {needed_by} needs maxiter (the run's stopping.maxiter)")
    return _count("maxiter", maxiter, 1, group="stopping")


def _flag(key: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"schedule.{key}", value, "must be true or false, shared by the batch")
    return bool(value)


def _split(values: dict[str, np.ndarray]) -> tuple[State, State]:
    """Scalars -> shared (1, 1) arrays; (B,) arrays -> per-row (B, 1) columns."""
    return ({k: v.reshape(1, 1) for k, v in values.items() if v.ndim == 0},
            {k: v.reshape(-1, 1) for k, v in values.items() if v.ndim == 1})


def _built(name: str, formula, values: dict[str, np.ndarray], shared: State | None = None,
           per_row: State | None = None, derive=None) -> Schedule:
    """A Schedule whose `at(count, state)` is `formula(count, p)`, p holding every value by name.

    A scalar value is shared by the batch and kept out of the state as a (1, 1)
    array, so the step's transcendental work (cos, pow) runs once, not per row;
    a (B,) value becomes a (B, 1) state column. Both go through the same numpy
    loops elementwise, so a row's values are bit-identical whether they came
    as scalars or inside (B,) arrays (numpy's scalar pow is another function
    than its array pow: values are never numpy scalars here). `shared` and
    `per_row` add values of other shapes, (1, k) and (B, k); `derive(p,
    opt_state)` adds state columns computed once at init.
    """
    common, rows = _split(values)
    common.update(shared or {})
    rows.update(per_row or {})

    def init(opt_state: State) -> State:
        base = np.asarray(opt_state["lr"], dtype=np.float64)
        if base.ndim != 2 or base.shape[1] != 1:
            raise ValueError(f"the optimizer's state['lr'] must be a (B, 1) column, got {base.shape}")
        b = len(base)
        for key, v in rows.items():
            if len(v) != b:
                raise ValueError(f"schedule.{key} has {len(v)} per-row values but the batch has {b} rows")
        state = {"base_lr": base.copy(), **{k: v.copy() for k, v in rows.items()}}
        return {**state, **derive({**common, **state}, opt_state)} if derive else state

    return Schedule(name, init, lambda count, s: formula(count, {**common, **s}))


def _choose(condition, then, otherwise):
    """np.where, computing one branch only when the condition is shared by the batch."""
    if condition.shape == (1, 1):
        return then() if condition.item() else otherwise()
    return np.where(condition, then(), otherwise())


# ---- the schedules ----

def constant(*, maxiter=None) -> Schedule:
    """The optimizer's own rate at every step (no torch scheduler); maxiter is unused."""
    return _built("constant", lambda count, p: {"lr": p["base_lr"]}, {})


def step(step_size: int = 100, gamma: float = 0.1, *, maxiter=None) -> Schedule:
    """The rate times gamma every step_size updates, as torch's StepLR.

    lr(count) = base_lr * gamma ** (count // step_size).

    Args:
        step_size: Updates between decays, an integer >= 1.
        gamma: The factor, finite and > 0 (> 1 grows the rate).
        maxiter: Unused; accepted so every schedule takes the run's budget.
    """
    values = {"step_size": _count("step_size", step_size, 1), "gamma": _positive("gamma", gamma)}
    return _built("step", lambda count, p: {"lr": p["base_lr"] * p["gamma"] ** (count // p["step_size"])}, values)


def multistep(milestones: list[int] = (100,), gamma: float = 0.1, *, maxiter=None) -> Schedule:
    """The rate times gamma at each milestone, as torch's MultiStepLR.

    lr(count) = base_lr * gamma ** (number of milestones <= count).

    Args:
        milestones: Strictly increasing update counts >= 1: a list shared by the
            batch, or a (B, k) array, one list per row (k is batch-wide).
        gamma: The factor, finite and > 0.
        maxiter: Unused; accepted so every schedule takes the run's budget.
    """
    try:
        ms = np.asarray(milestones, dtype=np.float64)
    except (TypeError, ValueError):
        ms = None
    if ms is None or ms.ndim not in (1, 2):
        raise ConfigError("schedule.milestones", milestones, "must be a list of integers (or one list per row)")
    if not np.all((ms >= 1) & (ms < np.inf) & (ms == np.floor(ms))):
        raise ConfigError("schedule.milestones", milestones, "must be integers >= 1 (update counts)")
    if not np.all(np.diff(ms, axis=-1) > 0):
        raise ConfigError("schedule.milestones", milestones, "must be strictly increasing")

    def formula(count, p):
        passed = (p["milestones"] <= count).sum(axis=-1, keepdims=True)
        return {"lr": p["base_lr"] * p["gamma"] ** passed}

    # One list for the batch is a (1, k) row; one per row, (B, k).
    # No milestones (torch's MultiStepLR takes []): the rate stays the base rate.
    where = {"shared" if ms.ndim == 1 else "per_row": {"milestones": ms.reshape(ms.shape[0] if ms.ndim == 2 else 1,
                                                                              ms.shape[-1])}}
    return _built("multistep", formula, {"gamma": _positive("gamma", gamma)}, **where)


def exponential(gamma: float = 0.99, *, maxiter=None) -> Schedule:
    """The rate times gamma at every update, as torch's ExponentialLR.

    lr(count) = base_lr * gamma ** count.

    Args:
        gamma: The factor, finite and > 0.
        maxiter: Unused; accepted so every schedule takes the run's budget.
    """
    return _built("exponential", lambda count, p: {"lr": p["base_lr"] * p["gamma"] ** count},
                  {"gamma": _positive("gamma", gamma)})


def _cosine(base, eta_min, count, period):
    # torch's closed form, in its order of operations.
    return eta_min + (base - eta_min) * (1 + np.cos(np.pi * count / period)) / 2


def _eta_min(value):
    return _number("eta_min", value, lambda v: (v >= 0) & (v < np.inf), "must be finite and >= 0")


def cosine(T_max: int | None = None, eta_min: float = 0.0, *, maxiter=None) -> Schedule:
    """Cosine annealing from the rate to eta_min over T_max updates, as torch's CosineAnnealingLR.

    lr(count) = eta_min + (base_lr - eta_min) * (1 + cos(pi * count / T_max)) / 2
    (Loshchilov & Hutter 2017, SGDR, without restarts). Past T_max the rate
    climbs back, as torch's does.

    Args:
        T_max: Updates of the half period, an integer >= 1; None = the run's maxiter.
        eta_min: The final rate, finite and >= 0.
        maxiter: The run's budget (B,) or scalar; needed when T_max is None.
    """
    period = _count("T_max", T_max, 1) if T_max is not None else _maxiter(maxiter, "cosine")
    return _built("cosine", lambda count, p: {"lr": _cosine(p["base_lr"], p["eta_min"], count, p["T_max"])},
                  {"T_max": period, "eta_min": _eta_min(eta_min)})


def warmup_cosine(warmup: int = 100, start_factor: float = 0.01, eta_min: float = 0.0,
                  *, maxiter=None) -> Schedule:
    """A linear warm-up, then cosine annealing to eta_min at the budget's end.

    torch's SequentialLR([LinearLR(start_factor, total_iters=warmup),
    CosineAnnealingLR(T_max=maxiter - warmup, eta_min)], milestones=[warmup]):

        count < warmup:  lr = base_lr * (start_factor + (1 - start_factor) * count / warmup)
        count >= warmup: lr = cosine(count - warmup) over T_max = maxiter - warmup

    Args:
        warmup: Updates of the warm-up, an integer in [0, maxiter); 0 = plain cosine.
        start_factor: The first update's fraction of the rate, in (0, 1] (as LinearLR).
        eta_min: The final rate, finite and >= 0.
        maxiter: The run's budget, (B,) or scalar.
    """
    horizon = _maxiter(maxiter, "warmup_cosine")
    steps = _count("warmup", warmup, 0)
    refuse_rows("schedule.warmup", warmup, steps >= horizon, "must be < stopping.maxiter")
    values = {"warmup": steps, "maxiter": horizon, "eta_min": _eta_min(eta_min),
              "start_factor": _number("start_factor", start_factor, lambda v: (v > 0) & (v <= 1),
                                      "must be in (0, 1]")}

    def formula(count, p):
        base, w, f = p["base_lr"], p["warmup"], p["start_factor"]
        # LinearLR's closed form; max(w, 1): rows without warm-up never take this branch.
        return {"lr": _choose(count < w,
                              lambda: base * (f + (1 - f) * np.minimum(count, w) / np.maximum(w, 1)),
                              lambda: _cosine(base, p["eta_min"], count - w, p["maxiter"] - w))}

    return _built("warmup_cosine", formula, values)


def _anneal(strategy: str, start, end, pct):
    # torch's OneCycleLR._annealing_cos / _annealing_linear, in their order of operations.
    if strategy == "cos":
        return end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1)
    return (end - start) * pct + start


def onecycle(pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4,
             anneal_strategy: str = "cos", cycle_momentum: bool = False,
             base_momentum: float = 0.85, max_momentum: float = 0.95, *, maxiter=None) -> Schedule:
    """The 1cycle policy over the run's budget, as torch's OneCycleLR(total_steps=maxiter).

    The rate rises from base_lr / div_factor to base_lr (max_lr = the
    optimizer's lr) over the first pct_start of the budget, then falls to
    base_lr / div_factor / final_div_factor (Smith & Topin 2019; torch's two
    phases, as fastai's).

    cycle_momentum defaults to false, unlike torch's True: torch's default
    overwrites the optimizer's momentum with max_momentum, which silently
    turns SGD(momentum=0) into heavy-ball SGD and replaces Adam's beta1, so
    an optimizer comparison under onecycle would not compare the configured
    optimizers. With true, momentum (momentum, nesterov, rmsprop) or beta1
    (adam) moves from max_momentum to base_momentum and back against the
    rate, exactly as torch does; gd and adagrad have none and are refused
    (for torch's SGD behaviour, use optimizer=momentum).

    Args:
        pct_start: Fraction of the budget spent rising, in (0, 1), with at
            least one update: pct_start * maxiter > 1.
        div_factor: The first rate is base_lr / div_factor, finite and > 0.
        final_div_factor: The last rate is base_lr / div_factor / final_div_factor, finite and > 0.
        anneal_strategy: "cos" or "linear", shared by the batch.
        cycle_momentum: Cycle the optimizer's momentum or beta1 (see above), shared by the batch.
        base_momentum: Momentum at the peak rate, in [0, 1).
        max_momentum: Momentum at the start and the end, in [0, 1).
        maxiter: The run's budget, (B,) or scalar: torch's total_steps.
    """
    total = _maxiter(maxiter, "onecycle")
    pct = _number("pct_start", pct_start, lambda v: (v > 0) & (v < 1), "must be in (0, 1)")
    # pct_start * maxiter - 1 is where torch's first phase ends; at <= 0 it has no update.
    refuse_rows("schedule.pct_start", pct_start, pct * total <= 1,
                "leaves the warm-up no update: need pct_start * maxiter > 1")
    if anneal_strategy not in ("cos", "linear"):
        raise ConfigError("schedule.anneal_strategy", anneal_strategy, "must be 'cos' or 'linear'")
    cycle = _flag("cycle_momentum", cycle_momentum)
    values = {"total_steps": total, "pct_start": pct,
              "div_factor": _positive("div_factor", div_factor),
              "final_div_factor": _positive("final_div_factor", final_div_factor)}
    if cycle:
        in_unit = (lambda v: (v >= 0) & (v < 1), "must be in [0, 1)")
        bounds = {"base": _number("base_momentum", base_momentum, *in_unit),
                  "max": _number("max_momentum", max_momentum, *in_unit)}

    def derive(p, opt_state):
        # torch's group["initial_lr"] and group["min_lr"], computed once as torch does.
        initial = p["base_lr"] / p["div_factor"]
        out = {"initial_lr": initial, "min_lr": initial / p["final_div_factor"]}
        if cycle:
            # Per-row columns named for the state key they drive, so `at` knows it.
            target, b = _cycled_key(opt_state), len(p["base_lr"])
            for end, v in bounds.items():
                if v.ndim and len(v) != b:
                    raise ValueError(f"schedule.{end}_momentum has {len(v)} per-row values but the batch has {b} rows")
                out[f"{end}_{target}"] = np.broadcast_to(v.reshape(-1, 1), (b, 1)).copy()
        return out

    def formula(count, p):
        rise_end = p["pct_start"] * p["total_steps"] - 1
        fall_end = p["total_steps"] - 1

        def phases(start, peak, end):
            # torch's two phases: start -> peak until rise_end, then peak -> end.
            return _choose(count <= rise_end,
                           lambda: _anneal(anneal_strategy, start, peak, count / rise_end),
                           lambda: _anneal(anneal_strategy, peak, end, (count - rise_end) / (fall_end - rise_end)))

        out = {"lr": phases(p["initial_lr"], p["base_lr"], p["min_lr"])}
        for target in ("momentum", "beta1"):
            if f"max_{target}" in p:
                out[target] = phases(p[f"max_{target}"], p[f"base_{target}"], p[f"max_{target}"])
        return out

    return _built("onecycle", formula, values, derive=derive)


def _cycled_key(opt_state: State) -> str:
    """The optimizer state's momentum-like column, as torch's OneCycleLR picks betas[0] or momentum."""
    if "beta1" in opt_state:
        return "beta1"
    if "momentum" in opt_state:
        return "momentum"
    raise ConfigError("schedule.cycle_momentum", True,
                      "the optimizer has no momentum or beta1 to cycle (use optimizer=momentum, or false)")


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    f.__name__: f for f in (constant, step, multistep, exponential, cosine, warmup_cosine, onecycle)
}


def make_schedule(name: str, *, maxiter=None, **values) -> Schedule:
    """Builds a registered schedule after checking its name and values.

    Args:
        name: A key of SCHEDULES.
        maxiter: The runs' budget (stopping.maxiter), scalar or (B,): cosine's
            default T_max, warmup_cosine's end and onecycle's total_steps.
        **values: The factory's keywords; numeric ones are scalars or (B,) arrays.

    Raises:
        ConfigError: Unknown name or keyword, or a value outside its valid range
            (key "schedule.<keyword>").

    >>> make_schedule("step", gamma=-0.5)
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: schedule.gamma=-0.5: must be finite and > 0
    """
    if name not in SCHEDULES:
        raise ConfigError("schedule.name", name, f"unknown schedule; known: {', '.join(SCHEDULES)}")
    factory = SCHEDULES[name]
    valid = [p for p in inspect.signature(factory).parameters if p != "maxiter"]
    for key, value in values.items():
        if key not in valid:
            reason = f"not a value of schedule {name}; valid: {', '.join(valid) or 'none'}"
            raise ConfigError(f"schedule.{key}", value, reason)
    return factory(**values, maxiter=maxiter)
