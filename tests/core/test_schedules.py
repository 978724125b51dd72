"""Every schedule against torch.optim.lr_scheduler, alone and driving every optimizer; the batch contract."""
import inspect
import math
import warnings

import numpy as np
import pytest

from gdexp.core.errors import ConfigError
from gdexp.core.optimizers import OPTIMIZERS, make_optimizer
from gdexp.core.schedules import SCHEDULES, make_schedule

BUDGET = 300
BASE_LR = 0.3

# Several value sets per schedule, non-default where it matters, so a swapped
# or ignored keyword shows. Cosine with T_max = 7 runs 40 half-periods (torch
# climbs back past T_max); warmup 0 is plain cosine, warmup 299 is all warm-up.
CASES = [
    ("constant", {}),
    ("step", dict(step_size=7, gamma=0.5)),
    ("step", dict(step_size=1, gamma=0.98)),
    ("step", dict(step_size=50, gamma=1.5)),
    ("multistep", dict(milestones=[10, 25, 60], gamma=0.3)),
    ("multistep", dict(milestones=[1], gamma=0.1)),
    ("multistep", dict(milestones=[], gamma=0.1)),  # none: the base rate throughout, as torch takes []
    ("exponential", dict(gamma=0.97)),
    ("exponential", dict(gamma=1.01)),
    ("cosine", {}),
    ("cosine", dict(T_max=40, eta_min=1e-3)),
    ("cosine", dict(T_max=7)),
    ("warmup_cosine", dict(warmup=20, start_factor=0.1)),
    ("warmup_cosine", dict(warmup=0, start_factor=0.1, eta_min=1e-2)),
    ("warmup_cosine", dict(warmup=299, start_factor=0.01, eta_min=1e-3)),
    ("warmup_cosine", dict(warmup=1, start_factor=1.0)),
    ("onecycle", {}),
    ("onecycle", dict(pct_start=0.25, div_factor=10.0, final_div_factor=100.0, anneal_strategy="linear")),
    ("onecycle", dict(pct_start=0.6, cycle_momentum=True, base_momentum=0.8, max_momentum=0.9)),
]
CASE_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]


def _full(name, values):
    """The case's values with the factory's defaults filled in."""
    params = inspect.signature(SCHEDULES[name]).parameters
    return {k: values.get(k, p.default) for k, p in params.items() if k != "maxiter"}


def _torch_scheduler(torch, name, opt, values, maxiter):
    """torch's counterpart of schedule `name`, as the module docstring of gdexp.core.schedules names it."""
    s, v = torch.optim.lr_scheduler, _full(name, values)
    if name == "constant":
        return None
    if name == "step":
        return s.StepLR(opt, step_size=v["step_size"], gamma=v["gamma"])
    if name == "multistep":
        return s.MultiStepLR(opt, milestones=list(v["milestones"]), gamma=v["gamma"])
    if name == "exponential":
        return s.ExponentialLR(opt, gamma=v["gamma"])
    if name == "cosine":
        return s.CosineAnnealingLR(opt, T_max=v["T_max"] or maxiter, eta_min=v["eta_min"])
    if name == "warmup_cosine":
        w = v["warmup"]
        return s.SequentialLR(opt, [s.LinearLR(opt, start_factor=v["start_factor"], total_iters=w),
                                    s.CosineAnnealingLR(opt, T_max=maxiter - w, eta_min=v["eta_min"])],
                              milestones=[w])
    return s.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"], total_steps=maxiter, **v)


def _torch_values(torch, name, values, lr, steps):
    """torch's lr, momentum and beta1 before each of `steps` updates (optimizer.step, then scheduler.step)."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opts = [torch.optim.SGD([p], lr=lr, momentum=0.5), torch.optim.Adam([p], lr=lr, betas=(0.5, 0.999))]
    scheds = [_torch_scheduler(torch, name, o, values, steps) for o in opts]
    out = {"lr": [], "momentum": [], "beta1": []}
    with warnings.catch_warnings():
        # No gradient: each optimizer.step() is a no-op torch still counts, which
        # keeps torch from warning that the scheduler stepped first.
        warnings.simplefilter("error")
        for _ in range(steps):
            out["lr"].append(opts[0].param_groups[0]["lr"])
            out["momentum"].append(opts[0].param_groups[0]["momentum"])
            out["beta1"].append(opts[1].param_groups[0]["betas"][0])
            for o, sch in zip(opts, scheds):
                o.step()
                if sch is not None:
                    sch.step()
    return {k: np.array(v) for k, v in out.items()}


def _ours(name, values, opt_state, steps, maxiter=BUDGET):
    sched = make_schedule(name, maxiter=maxiter, **values)
    s = sched.init(opt_state)
    got = [sched.at(t, s) for t in range(steps)]
    return {k: np.stack([g[k] for g in got]) for k in got[0]}  # (steps, B, 1)


def test_every_schedule_has_a_case():
    assert {name for name, _ in CASES} == set(SCHEDULES)
    assert all(make_schedule(name, maxiter=BUDGET).name == name for name in SCHEDULES)
    assert [name for name in SCHEDULES if make_schedule(name, maxiter=BUDGET).is_constant] == ["constant"]


@pytest.mark.parametrize("name, values", CASES, ids=CASE_IDS)
def test_values_match_torch_over_the_whole_budget(name, values):
    torch = pytest.importorskip("torch", reason="torch.optim.lr_scheduler is the reference")
    ref = _torch_values(torch, name, values, BASE_LR, BUDGET)
    for key in ("momentum", "beta1"):  # the state each optimizer would hold
        got = _ours(name, values, {"lr": np.array([[BASE_LR]]), key: np.array([[0.5]])}, BUDGET)
        # Measured max relative difference (torch 2.13.0 CPU): bit-equal for
        # step and onecycle, <= 2e-15 for the others except cosine past T_max
        # (7.5e-14 after 40 half-periods of torch's recursion).
        np.testing.assert_allclose(got["lr"][:, 0, 0], ref["lr"], rtol=1e-12, atol=0)
        if values.get("cycle_momentum"):
            assert set(got) == {"lr", key}
            np.testing.assert_allclose(got[key][:, 0, 0], ref[key], rtol=1e-12, atol=0)
        else:
            assert set(got) == {"lr"}
    varies = name != "constant" and values.get("milestones") != []  # no milestones: the base rate throughout
    assert len(np.unique(ref["lr"])) > (1 if varies else 0)


def test_onecycle_does_not_touch_momentum_unless_asked():
    # torch's default cycle_momentum=True sets SGD's momentum to 0.95 at once.
    torch = pytest.importorskip("torch", reason="torch.optim.lr_scheduler is the reference")
    assert _torch_values(torch, "onecycle", {"cycle_momentum": True}, BASE_LR, 1)["momentum"][0] == 0.95
    assert set(_ours("onecycle", {}, {"lr": np.array([[BASE_LR]]), "momentum": np.array([[0.0]])}, 1)) == {"lr"}


# ---- every optimizer under every schedule, against torch.optim + the torch scheduler ----

STEPS = 50
X0 = np.array([1.5, -2.0, 0.7, 3.0, -0.4])
CURVATURE = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
NOISE = np.random.default_rng(0).normal(size=(STEPS, X0.size))

OPTIMIZER_CASES = {
    "gd": dict(lr=0.05, weight_decay=0.01),
    "momentum": dict(lr=0.02, momentum=0.8, dampening=0.3, weight_decay=0.01),
    "nesterov": dict(lr=0.02, momentum=0.7),
    "adagrad": dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-8),
    "rmsprop": dict(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.5, centered=True),
    "adam": dict(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6, amsgrad=True),
}
# One value set per schedule for a 50-step budget; onecycle twice, cycling momentum or not.
DESCENT_SCHEDULES = [
    ("constant", {}), ("step", dict(step_size=7, gamma=0.5)),
    ("multistep", dict(milestones=[10, 25, 40], gamma=0.3)), ("exponential", dict(gamma=0.95)),
    ("cosine", dict(eta_min=1e-3)), ("warmup_cosine", dict(warmup=10, start_factor=0.1, eta_min=1e-3)),
    ("onecycle", dict(pct_start=0.3)),
    ("onecycle", dict(pct_start=0.3, cycle_momentum=True, base_momentum=0.8, max_momentum=0.9)),
]
CYCLES = {"momentum", "nesterov", "rmsprop", "adam"}
PAIRS = [(o, s, v) for o in OPTIMIZERS for s, v in DESCENT_SCHEDULES
         if not v.get("cycle_momentum") or o in CYCLES]


def _grad(x, t):
    return CURVATURE * x + NOISE[t]  # elementwise: numpy and torch get the same bits


def _torch_optimizer(torch, name, params, h):
    o = torch.optim
    full = {k: h.get(k, p.default) for k, p in inspect.signature(OPTIMIZERS[name]).parameters.items()}
    if name in ("gd", "momentum", "nesterov"):
        extra = {"momentum": full["momentum"], "dampening": full.get("dampening", 0.0),
                 "nesterov": name == "nesterov"} if name != "gd" else {}
        return o.SGD(params, lr=full["lr"], weight_decay=full["weight_decay"], **extra)
    if name == "adam":
        return o.Adam(params, lr=full["lr"], betas=(full["beta1"], full["beta2"]), eps=full["eps"],
                      amsgrad=full["amsgrad"], weight_decay=full["weight_decay"])
    return {"adagrad": o.Adagrad, "rmsprop": o.RMSprop}[name](params, **full)


def _descend(opt_name, hyper, sched_name, values, x0, steps=STEPS):
    """The loop the descent runs: set the scheduled values, then update."""
    opt = make_optimizer(opt_name, **hyper)
    sched = make_schedule(sched_name, maxiter=steps, **values)
    x = x0
    state = opt.init(x)
    s = sched.init(state)
    path, lrs = [], []
    for t in range(steps):
        state = {**state, **sched.at(t, s)}
        updates, state = opt.update(_grad(x, t), state, x)
        x = x + updates
        path.append(x)
        lrs.append(state["lr"])
    return np.stack(path), np.stack(lrs)


@pytest.mark.parametrize("opt_name, sched_name, values", PAIRS,
                         ids=[f"{o}-{s}{'-cycled' if v.get('cycle_momentum') else ''}" for o, s, v in PAIRS])
def test_descent_matches_torch(opt_name, sched_name, values):
    torch = pytest.importorskip("torch", reason="torch.optim is the reference")
    hyper = OPTIMIZER_CASES[opt_name]
    p = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
    opt = _torch_optimizer(torch, opt_name, [p], hyper)
    sched = _torch_scheduler(torch, sched_name, opt, values, STEPS)
    path, lrs = [], []
    for t in range(STEPS):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.from_numpy(_grad(p.detach().numpy(), t))
        opt.step()
        if sched is not None:
            sched.step()
        path.append(p.detach().numpy().copy())
    ours, our_lrs = _descend(opt_name, hyper, sched_name, values, X0[None])
    # The state's lr after each update is the rate that update used: the curve to log.
    np.testing.assert_allclose(our_lrs[:, 0, 0], lrs, rtol=1e-12, atol=0)
    # Measured max relative difference over the 50 iterates: <= 1e-13, as for
    # the optimizers alone (tests/core/test_optimizers.py).
    np.testing.assert_allclose(ours[:, 0], np.stack(path), rtol=1e-12, atol=0)


@pytest.mark.parametrize("opt_name", sorted(set(OPTIMIZERS) - CYCLES))
def test_cycling_an_optimizer_without_momentum_is_refused(opt_name):
    sched = make_schedule("onecycle", maxiter=STEPS, cycle_momentum=True)
    opt = make_optimizer(opt_name)
    with pytest.raises(ConfigError, match="schedule.cycle_momentum=True: the optimizer has no momentum or beta1"):
        sched.init(opt.init(np.zeros((1, 2))))


# ---- the batch contract: per-row base rates and values, row independence ----

ROWS = 3
ROW_LRS = np.array([0.3, 0.05, 1.2])
ROW_MAXITER = np.array([300, 120, 250])
# Per-row values for every schedule (each numeric value its own per row).
ROW_CASES = [
    ("constant", {}),
    ("step", dict(step_size=np.array([7, 1, 50]), gamma=np.array([0.5, 0.98, 1.5]))),
    ("multistep", dict(milestones=np.array([[10, 25, 60], [1, 2, 3], [100, 200, 299]]), gamma=np.array([0.3, 0.9, 2.0]))),
    ("exponential", dict(gamma=np.array([0.97, 1.01, 0.99]))),
    ("cosine", dict(T_max=np.array([300, 40, 7]), eta_min=np.array([0.0, 1e-3, 0.1]))),
    ("warmup_cosine", dict(warmup=np.array([20, 0, 249]), start_factor=np.array([0.1, 0.5, 1.0]),
                           eta_min=np.array([0.0, 1e-3, 1e-2]))),
    ("onecycle", dict(pct_start=np.array([0.3, 0.25, 0.6]), div_factor=np.array([25.0, 10.0, 4.0]),
                      final_div_factor=np.array([1e4, 100.0, 3.0]))),
    ("onecycle", dict(pct_start=0.4, cycle_momentum=True, base_momentum=np.array([0.8, 0.85, 0.5]),
                      max_momentum=np.array([0.9, 0.95, 0.99]))),
]
ROW_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(ROW_CASES)]


def _row(values, i):
    return {k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in values.items()}


def _batch_state(n=ROWS):
    return {"lr": ROW_LRS[:n, None], "momentum": np.full((n, 1), 0.5)}


@pytest.mark.parametrize("name, values", ROW_CASES, ids=ROW_IDS)
def test_each_row_as_if_alone_and_as_torch(name, values):
    steps = int(ROW_MAXITER.min())
    batch = _ours(name, values, _batch_state(), steps, maxiter=ROW_MAXITER)
    torch = pytest.importorskip("torch", reason="torch.optim.lr_scheduler is the reference")
    for i in range(ROWS):
        alone = _ours(name, _row(values, i), {"lr": ROW_LRS[i:i + 1, None], "momentum": np.array([[0.5]])},
                      steps, maxiter=int(ROW_MAXITER[i]))
        assert all(np.array_equal(batch[k][:, i], alone[k][:, 0]) for k in batch)
        ref = _torch_values(torch, name, _row(values, i), ROW_LRS[i], int(ROW_MAXITER[i]))
        for key in batch:
            np.testing.assert_allclose(batch[key][:, i, 0], ref[key][:steps], rtol=1e-12, atol=0)


@pytest.mark.parametrize("name, values", ROW_CASES, ids=ROW_IDS)
def test_dropping_rows_changes_nothing_for_the_rest(name, values):
    sched = make_schedule(name, maxiter=ROW_MAXITER, **values)
    s = sched.init(_batch_state())
    assert all(v.shape[0] == ROWS and v.dtype == np.float64 for v in s.values())
    keep = np.array([True, False, True])
    kept = {k: v[keep] for k, v in s.items()}
    for t in (0, 3, 50, 119):
        full, part = sched.at(t, s), sched.at(t, kept)
        assert all(np.array_equal(full[k][keep], part[k]) and part[k].shape == (2, 1) for k in full)


def test_count_may_be_a_column():
    # One count per row (as a resumed batch would hold) gives each row its own value.
    sched = make_schedule("warmup_cosine", maxiter=100, warmup=10)
    s = sched.init({"lr": np.full((3, 1), 0.1)})
    counts = np.array([[0], [5], [60]])
    column = sched.at(counts, s)["lr"]
    assert [column[i, 0] for i in range(3)] == [sched.at(int(c), s)["lr"][i, 0] for i, c in enumerate(counts[:, 0])]


def test_per_row_lengths_must_match_the_batch():
    with pytest.raises(ValueError, match="schedule.gamma has 2 per-row values but the batch has 3 rows"):
        make_schedule("step", gamma=np.array([0.5, 0.1])).init(_batch_state())
    with pytest.raises(ValueError, match="schedule.milestones has 2 per-row values but the batch has 3 rows"):
        make_schedule("multistep", milestones=np.array([[1, 2], [3, 4]])).init(_batch_state())


def test_init_leaves_the_optimizer_state_alone():
    state = _batch_state()
    before = {k: v.copy() for k, v in state.items()}
    sched = make_schedule("onecycle", maxiter=50, cycle_momentum=True)
    s = sched.init(state)
    sched.at(7, s)
    assert all(np.array_equal(state[k], before[k]) for k in state)
    assert not any(np.shares_memory(v, state["lr"]) for v in s.values())


# ---- validation ----

BAD = [  # (name, values, the key, the value the message must show)
    ("sgdr", {}, "schedule.name", "sgdr"),
    ("step", {"milestones": [3]}, "schedule.milestones", [3]),
    ("step", {"step_size": 0}, "schedule.step_size", 0),
    ("step", {"step_size": 2.5}, "schedule.step_size", 2.5),
    ("step", {"gamma": 0.0}, "schedule.gamma", 0.0),
    ("step", {"gamma": -1}, "schedule.gamma", -1),
    ("step", {"gamma": True}, "schedule.gamma", True),
    ("step", {"gamma": np.array([0.5, -0.5])}, "schedule.gamma", -0.5),
    ("exponential", {"gamma": math.nan}, "schedule.gamma", math.nan),
    ("exponential", {"gamma": "slow"}, "schedule.gamma", "slow"),
    ("multistep", {"milestones": [5, 3]}, "schedule.milestones", [5, 3]),
    ("multistep", {"milestones": [3, 3]}, "schedule.milestones", [3, 3]),
    ("multistep", {"milestones": [-1, 3]}, "schedule.milestones", [-1, 3]),
    ("multistep", {"milestones": [0, 3]}, "schedule.milestones", [0, 3]),
    ("multistep", {"milestones": [1.5]}, "schedule.milestones", [1.5]),
    ("multistep", {"milestones": "soon"}, "schedule.milestones", "soon"),
    ("cosine", {"T_max": 0}, "schedule.T_max", 0),
    ("cosine", {"eta_min": -1e-3}, "schedule.eta_min", -1e-3),
    ("warmup_cosine", {"warmup": BUDGET}, "schedule.warmup", BUDGET),
    ("warmup_cosine", {"warmup": -1}, "schedule.warmup", -1),
    ("warmup_cosine", {"start_factor": 0.0}, "schedule.start_factor", 0.0),
    ("warmup_cosine", {"start_factor": 1.5}, "schedule.start_factor", 1.5),
    ("onecycle", {"pct_start": 0.0}, "schedule.pct_start", 0.0),
    ("onecycle", {"pct_start": 1.0}, "schedule.pct_start", 1.0),
    ("onecycle", {"pct_start": 1 / BUDGET}, "schedule.pct_start", 1 / BUDGET),
    ("onecycle", {"div_factor": 0.0}, "schedule.div_factor", 0.0),
    ("onecycle", {"final_div_factor": math.inf}, "schedule.final_div_factor", math.inf),
    ("onecycle", {"anneal_strategy": "exp"}, "schedule.anneal_strategy", "exp"),
    ("onecycle", {"cycle_momentum": "yes"}, "schedule.cycle_momentum", "yes"),
    ("onecycle", {"cycle_momentum": True, "max_momentum": 1.0}, "schedule.max_momentum", 1.0),
    ("onecycle", {"cycle_momentum": True, "base_momentum": -0.1}, "schedule.base_momentum", -0.1),
]


@pytest.mark.parametrize("name, values, key, shown", BAD, ids=[f"{b[0]}-{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_values_fail_with_one_line(name, values, key, shown):
    with pytest.raises(ConfigError) as err:
        make_schedule(name, maxiter=BUDGET, **values)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}={shown!r}: ")
    assert "\n" not in str(err.value)


def test_per_row_errors_name_the_row():
    with pytest.raises(ConfigError, match=r"schedule.warmup=120: must be < stopping.maxiter \(row 1\)"):
        make_schedule("warmup_cosine", maxiter=ROW_MAXITER, warmup=120)
    with pytest.raises(ConfigError, match=r"schedule.step_size=0: must be an integer >= 1 \(row 2\)"):
        make_schedule("step", step_size=np.array([1, 2, 0]))


def test_budget_schedules_need_maxiter():
    for name in ("cosine", "warmup_cosine", "onecycle"):
        with pytest.raises(TypeError, match=f"schedule {name} needs maxiter"):
            make_schedule(name)
    assert make_schedule("cosine", T_max=10).name == "cosine"  # T_max given: no budget needed
