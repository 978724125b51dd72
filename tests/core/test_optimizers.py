"""Every optimizer against torch.optim, a plain-float reference, and the batch contract."""
import inspect
import math

import numpy as np
import pytest

from gdexp.core.errors import ConfigError
from gdexp.core.optimizers import OPTIMIZERS, make_optimizer

STEPS = 50
X0 = np.array([1.5, -2.0, 0.7, 3.0, -0.4])
CURVATURE = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
CENTER = np.array([1.0, 2.0, -1.0, 0.5, -3.0])
# Noise keeps the gradients away from zero, where relative errors mean nothing,
# and lets second moments shrink at times, so amsgrad's max is exercised.
NOISE = np.random.default_rng(0).normal(size=(STEPS, X0.size))

# Non-default values everywhere, so a swapped or ignored keyword shows.
CASES = [
    ("gd", dict(lr=0.05, weight_decay=0.01)),
    ("momentum", dict(lr=0.02, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("momentum", dict(lr=0.02, momentum=0.0, dampening=0.5)),  # torch bypasses the buffer
    ("nesterov", dict(lr=0.02, momentum=0.7, weight_decay=0.01)),
    ("adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-8, weight_decay=0.01)),
    ("rmsprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.01)),
    ("rmsprop", dict(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.01)),
    ("adam", dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01)),
    ("adam", dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, amsgrad=True, weight_decay=0.01)),
]
CASE_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]


def _grad(x, t):
    # Elementwise only, so numpy, torch and plain floats get the same bits.
    return CURVATURE * (x - CENTER) + NOISE[t]


def _full(name, hyper):
    """The case's hyper-parameters with the factory's defaults filled in."""
    params = inspect.signature(OPTIMIZERS[name]).parameters
    return {k: hyper.get(k, p.default) for k, p in params.items()}


def _descend(opt, x, state, steps, t0=0):
    path = []
    for t in range(t0, t0 + steps):
        updates, state = opt.update(_grad(x, t), state, x)
        x = x + updates
        path.append(x)
    return np.stack(path), x, state


def _ours(name, hyper, x0):
    opt = make_optimizer(name, **hyper)
    return _descend(opt, x0, opt.init(x0), STEPS)[0]


def test_every_optimizer_has_a_case():
    assert {name for name, _ in CASES} == set(OPTIMIZERS)
    assert all(make_optimizer(name).name == name for name in OPTIMIZERS)


def test_defaults_are_torchs():
    expected = {
        "gd": dict(lr=1e-3, weight_decay=0.0),
        "momentum": dict(lr=1e-3, momentum=0.9, dampening=0.0, weight_decay=0.0),
        "nesterov": dict(lr=1e-3, momentum=0.9, weight_decay=0.0),
        "adagrad": dict(lr=1e-2, lr_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, weight_decay=0.0),
        "rmsprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0),
        "adam": dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, amsgrad=False, weight_decay=0.0),
    }
    assert {name: _full(name, {}) for name in OPTIMIZERS} == expected


# ---- agreement with torch.optim and with a plain-float reference ----

def _torch_optimizer(torch, name, params, h):
    o = torch.optim
    sgd = dict(lr=h["lr"], weight_decay=h["weight_decay"])
    return {
        "gd": lambda: o.SGD(params, **sgd),
        "momentum": lambda: o.SGD(params, momentum=h["momentum"], dampening=h["dampening"], **sgd),
        "nesterov": lambda: o.SGD(params, momentum=h["momentum"], nesterov=True, **sgd),
        "adagrad": lambda: o.Adagrad(params, **h),
        "rmsprop": lambda: o.RMSprop(params, **h),
        "adam": lambda: o.Adam(params, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                               amsgrad=h["amsgrad"], weight_decay=h["weight_decay"]),
    }[name]()


@pytest.mark.parametrize("name, hyper", CASES, ids=CASE_IDS)
def test_matches_torch(name, hyper):
    torch = pytest.importorskip("torch")
    p = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
    opt = _torch_optimizer(torch, name, [p], _full(name, hyper))
    path = []
    for t in range(STEPS):
        p.grad = torch.from_numpy(_grad(p.detach().numpy(), t))
        opt.step()
        path.append(p.detach().numpy().copy())
    # Measured max relative difference over the 50 iterates (torch 2.13.0 CPU):
    # bit-equal for adagrad and plain rmsprop, 4.5e-16 for adam, <= 9e-15 for
    # the SGD family, 9e-14 for centered rmsprop. torch's CPU kernels fuse some
    # multiply-adds, which numpy cannot; square_avg - grad_avg**2 cancels.
    np.testing.assert_allclose(_ours(name, hyper, X0[None])[:, 0], np.stack(path), rtol=1e-12, atol=0)


def _ref_sgd(x, g, s, t, h):
    g += h["weight_decay"] * x
    mu = h.get("momentum", 0.0)
    if mu != 0:
        s["buf"] = g if t == 1 else mu * s["buf"] + (1 - h.get("dampening", 0.0)) * g
        g = g + mu * s["buf"] if "nesterov" in h else s["buf"]
    return x - h["lr"] * g


def _ref_adagrad(x, g, s, t, h):
    g += h["weight_decay"] * x
    clr = h["lr"] / (1 + (t - 1) * h["lr_decay"])
    s["sum"] = s.get("sum", h["initial_accumulator_value"]) + g * g
    return x - clr * g / (math.sqrt(s["sum"]) + h["eps"])


def _ref_rmsprop(x, g, s, t, h):
    g += h["weight_decay"] * x
    a = h["alpha"]
    s["v"] = a * s.get("v", 0.0) + (1 - a) * g * g
    v = s["v"]
    if h["centered"]:
        s["g_ave"] = a * s.get("g_ave", 0.0) + (1 - a) * g
        v = v - s["g_ave"] ** 2
    if h["momentum"] > 0:
        s["b"] = h["momentum"] * s.get("b", 0.0) + g / (math.sqrt(v) + h["eps"])
        return x - h["lr"] * s["b"]
    return x - h["lr"] * g / (math.sqrt(v) + h["eps"])


def _ref_adam(x, g, s, t, h):
    g += h["weight_decay"] * x
    b1, b2 = h["beta1"], h["beta2"]
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    if h["amsgrad"]:
        s["v_max"] = max(s.get("v_max", 0.0), s["v"])
    v_hat = s["v_max" if h["amsgrad"] else "v"] / (1 - b2**t)
    return x - h["lr"] * (s["m"] / (1 - b1**t)) / (math.sqrt(v_hat) + h["eps"])


# Written from the pseudo-code in torch.optim's documentation, in plain floats.
_REFERENCE = {"gd": _ref_sgd, "momentum": _ref_sgd, "adagrad": _ref_adagrad,
              "rmsprop": _ref_rmsprop, "adam": _ref_adam,
              "nesterov": lambda x, g, s, t, h: _ref_sgd(x, g, s, t, {**h, "nesterov": True})}


@pytest.mark.parametrize("name, hyper", CASES, ids=CASE_IDS)
def test_matches_plain_float_reference(name, hyper):
    h, x = _full(name, hyper), [float(v) for v in X0]
    states, path = [{} for _ in x], []
    for t in range(STEPS):
        g = [float(c) * (xi - float(m)) + float(n) for xi, c, m, n in zip(x, CURVATURE, CENTER, NOISE[t])]
        x = [_REFERENCE[name](xi, gi, s, t + 1, h) for xi, gi, s in zip(x, g, states)]
        path.append(x)
    # Measured: bit-equal for the SGD family, adagrad and plain rmsprop; adam
    # 8e-16 and centered rmsprop 2e-13, where the documented formulas round in
    # another order than torch's code.
    np.testing.assert_allclose(_ours(name, hyper, X0[None])[:, 0], np.array(path), rtol=1e-12, atol=0)


# ---- the batch contract: per-row hyper-parameters, row independence, purity ----

ROWS_X0 = X0 * np.array([[1.0], [0.9], [1.1], [-0.5]])
LR_SCALES = np.array([0.5, 1.0, 1.5, 2.0])
ROW_WEIGHT_DECAY = np.array([0.0, 0.01, 0.02, 0.0])  # 0 takes torch's skip branch


def _row_hyper(hyper, rows):
    return {**hyper, "lr": hyper["lr"] * LR_SCALES[rows], "weight_decay": ROW_WEIGHT_DECAY[rows]}


@pytest.mark.parametrize("name, hyper", CASES, ids=CASE_IDS)
def test_each_row_runs_as_if_alone(name, hyper):
    batch = _ours(name, _row_hyper(hyper, slice(None)), ROWS_X0)
    for i in range(4):
        alone = _ours(name, {k: v.item() if np.ndim(v) else v for k, v in _row_hyper(hyper, [i]).items()},
                      ROWS_X0[i:i + 1])
        assert np.array_equal(batch[:, i:i + 1], alone)


@pytest.mark.parametrize("name, hyper", CASES, ids=CASE_IDS)
def test_dropping_rows_mid_run_changes_nothing_for_the_rest(name, hyper):
    keep = np.array([True, False, True, False])
    opt = make_optimizer(name, **_row_hyper(hyper, slice(None)))
    _, x, state = _descend(opt, ROWS_X0, opt.init(ROWS_X0), 20)
    state = {k: v[keep] for k, v in state.items()}
    after, _, _ = _descend(opt, x[keep], state, STEPS - 20, t0=20)
    assert np.array_equal(after, _ours(name, _row_hyper(hyper, keep), ROWS_X0[keep])[20:])


BUFFERS = {"gd": set(), "momentum": {"momentum_buffer", "step"}, "nesterov": {"momentum_buffer", "step"},
           "adagrad": {"sum", "step"}, "rmsprop": {"square_avg", "momentum_buffer"},
           "adam": {"exp_avg", "exp_avg_sq", "step"}}


@pytest.mark.parametrize("name, hyper", CASES, ids=CASE_IDS)
def test_state_is_batch_leading_and_update_is_pure(name, hyper):
    opt = make_optimizer(name, **_row_hyper(hyper, slice(None)))
    state = opt.init(ROWS_X0)
    columns = {k for k, v in _full(name, hyper).items() if not isinstance(v, bool)}
    optional = {"grad_avg"} if hyper.get("centered") else {"max_exp_avg_sq"} if hyper.get("amsgrad") else set()
    assert set(state) == columns - {"initial_accumulator_value"} | BUFFERS[name] | optional
    assert all(v.shape in {(4, 1), (4, X0.size)} and v.dtype == np.float64 for v in state.values())
    _, _, state = _descend(opt, ROWS_X0, state, 3)
    before = {k: v.copy() for k, v in state.items()}
    _, new = opt.update(_grad(ROWS_X0, 3), state, ROWS_X0)
    assert new.keys() == state.keys()
    assert all(np.array_equal(state[k], before[k]) for k in before)


def test_amsgrad_max_is_active():
    # Otherwise the adam-amsgrad comparisons could not tell max from plain v.
    opt = make_optimizer("adam", **CASES[-1][1])
    _, _, state = _descend(opt, X0[None], opt.init(X0[None]), STEPS)
    assert (state["max_exp_avg_sq"] > state["exp_avg_sq"]).any()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_zero_weight_decay_never_reads_x(name):
    # As in torch, a diverged row (x = inf) with a finite gradient stays finite.
    opt = make_optimizer(name)
    x = np.full((1, 2), np.inf)
    with np.errstate(invalid="ignore"):  # np.where's discarded branch still computes 0 * inf
        updates, _ = opt.update(np.ones((1, 2)), opt.init(np.zeros((1, 2))), x)
    assert np.isfinite(updates).all()


def test_per_row_length_must_match_the_batch():
    opt = make_optimizer("adam", lr=np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="3 per-row values but x0 has 4 rows"):
        opt.init(np.zeros((4, 2)))


# ---- validation ----

BAD = [  # (name, hyper, the value the message must show)
    ("sgdd", {}, "sgdd"),
    ("gd", {"momentum": 0.9}, 0.9),
    ("gd", {"lr": 0.0}, 0.0),
    ("gd", {"lr": -1e-3}, -1e-3),
    ("gd", {"lr": math.nan}, math.nan),
    ("gd", {"lr": math.inf}, math.inf),
    ("gd", {"lr": np.array([0.1, -0.2, 0.3])}, -0.2),
    ("gd", {"lr": "fast"}, "fast"),
    ("gd", {"weight_decay": -0.1}, -0.1),
    ("momentum", {"momentum": -0.1}, -0.1),
    ("momentum", {"dampening": 1.5}, 1.5),
    ("momentum", {"dampening": -0.5}, -0.5),
    ("nesterov", {"momentum": math.nan}, math.nan),
    ("adagrad", {"lr_decay": -1.0}, -1.0),
    ("adagrad", {"eps": 0.0}, 0.0),
    ("adagrad", {"initial_accumulator_value": -1.0}, -1.0),
    ("rmsprop", {"alpha": 1.5}, 1.5),
    ("rmsprop", {"alpha": -0.1}, -0.1),
    ("rmsprop", {"centered": "yes"}, "yes"),
    ("adam", {"beta1": 1.0}, 1.0),
    ("adam", {"beta2": -0.1}, -0.1),
    ("adam", {"eps": -1e-8}, -1e-8),
    ("adam", {"amsgrad": 1}, 1),
]


@pytest.mark.parametrize("name, hyper, shown", BAD)
def test_bad_config_names_key_and_value(name, hyper, shown):
    key = f"optimizer.{next(iter(hyper), 'name')}"
    with pytest.raises(ConfigError) as err:
        make_optimizer(name, **hyper)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}={shown!r}: ")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="known: gd, momentum, nesterov, adagrad, rmsprop, adam"):
        make_optimizer("sgdd")
    with pytest.raises(ConfigError, match="valid keys: lr, weight_decay"):
        make_optimizer("gd", momentum=0.9)


@pytest.mark.parametrize("name, hyper", [
    ("rmsprop", dict(alpha=0.0)), ("rmsprop", dict(alpha=1.0)),
    ("momentum", dict(momentum=1.5, dampening=1.0)), ("adam", dict(beta1=0.0, beta2=0.0)),
    ("gd", dict(lr=np.array([1e-3, 10.0]), weight_decay=0.0)),
])
def test_boundary_values_are_accepted(name, hyper):
    assert make_optimizer(name, **hyper).name == name
