"""Property-based: any value for any key of any group either runs or is refused in one line (issue 15).

Hypothesis draws a loss, an optimizer and a schedule, then one to three keys of those options,
of `stopping`, `tracking` or the top level (init, seed), each set to a number (huge integers,
NaN, infinities included), a string, a boolean, null or a list, and runs `gdexp` in-process.
Each example must end one of two ways: exit 0 with exactly one more run in the store, FINISHED;
or exit 2 with one line `gdexp: error: KEY=VALUE: reason` and no run created. Never a traceback,
never a run left RUNNING. Derandomized, a fixed number of examples and small budgets keep the
CI cost bounded. The keys that size memory (item 9 of the issue: stopping.maxiter, loss.n, a
loss's dim, an MLP's hidden sizes, tracking.curve_points) get small or invalid values only here:
their huge values are the lead's memory estimate (tests/faults/test_lead_parts.py).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fault_tools import all_runs

pytestmark = pytest.mark.faults

CONF = Path(__file__).resolve().parents[2] / "conf"
EXAMPLES = 160
SIZING = {"stopping.maxiter", "loss.n", "loss.dim", "loss.hidden", "tracking.curve_points"}
TALLY: Counter = Counter()


def _options(group: str) -> dict[str, list[str]]:
    """Each option of a config group -> its keys (the _target_ and defaults left out)."""
    out = {}
    for path in sorted((CONF / group).glob("*.yaml")):
        node = yaml.safe_load(path.read_text()) or {}
        out[path.stem] = [k for k in node if k not in ("_target_", "defaults")]
    return out


LOSSES = {k: v for k, v in _options("loss").items() if k != "custom"}  # custom: tests/specs/test_user_loss.py
OPTIMIZERS, SCHEDULES = _options("optimizer"), _options("schedule")
FIXED = ([f"stopping.{k}" for k in _options("stopping")["default"]]
         + [f"tracking.{k}" for k in _options("tracking")["local"] if k != "uri"]  # uri: the hostile-input table
         + ["init", "seed"])

HUGE = st.sampled_from([2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63), 10**400])
SMALL_INT = st.integers(-3, 300)
FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1e-300])
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12) | st.sampled_from(
    ["", " ", "x", "y", "nan", "1e309", "${oops}", "digits", "tanh", "cos", "../../etc/passwd", "a,b", "é"])
PLAUSIBLE = st.floats(0, 2) | st.sampled_from([1e-3, 0.5, 0.9, 1.0])  # values that run, reaching further
SCALAR = SMALL_INT | PLAUSIBLE | FLOAT | TEXT | st.booleans() | st.none()


def _values(key: str):
    if key in SIZING:  # small or invalid only (see the module docstring)
        return st.integers(-3, 200) | st.floats(-5, 200) | TEXT | st.none() | st.lists(st.integers(-2, 40), max_size=3)
    return SCALAR | HUGE | st.lists(SMALL_INT | PLAUSIBLE | FLOAT | TEXT, max_size=4)


def encode(value) -> str:
    """A Python value as Hydra's override grammar writes it.

    >>> encode([1, "a'b", None, float("nan")])
    "[1,'a\\\\'b',null,nan]"
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value).replace("inf", "inf").replace("nan", "nan")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@st.composite
def configs(draw):
    loss = draw(st.sampled_from(sorted(LOSSES)))
    optimizer = draw(st.sampled_from(sorted(OPTIMIZERS)))
    schedule = draw(st.sampled_from(sorted(SCHEDULES)))
    keys = ([f"loss.{k}" for k in LOSSES[loss]] + [f"optimizer.{k}" for k in OPTIMIZERS[optimizer]]
            + [f"schedule.{k}" for k in SCHEDULES[schedule]] + FIXED)
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))
    overrides = [f"{key}={encode(draw(_values(key)))}" for key in chosen]
    budget = [] if "stopping.maxiter" in chosen else ["stopping.maxiter=60"]
    return [f"loss={loss}", f"optimizer={optimizer}", f"schedule={schedule}", *budget, *overrides]


AFTER: dict[str, int] = {}  # store -> its number of runs after the last example (the next one's before)


def _check(gdexp, store, args) -> str:
    """One example's outcome, "ran" or "refused"; `store` changes only through these examples, so
    the count read after one is the next one's count before (one read of the store per example)."""
    before = AFTER[store] if store in AFTER else len(all_runs(store))
    try:
        code, out, err = gdexp(*args)
    except Exception as exc:  # noqa: BLE001 - in-process, a traceback is an exception out of the command
        pytest.fail(f"{args}: a traceback: {type(exc).__name__}: {exc}"[:2000])
    runs = all_runs(store)
    AFTER[store] = len(runs)
    assert "Traceback" not in err and "Traceback" not in out, (args, err)
    assert not [r for r in runs if r.info.status == "RUNNING"], args
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:
        assert len(runs) == before + 1 and runs[0].info.status == "FINISHED", (args, err)
        return "ran"
    assert code == 2, (args, code, err)
    assert len(lines) == 1 and lines[0].startswith("gdexp: error: "), (args, err)
    assert len(runs) == before, (args, "a run was created for a refused config")
    return "refused"


@pytest.fixture(scope="module")
def tally():
    yield TALLY
    print(f"\nproperty tests: {json.dumps(dict(TALLY), sort_keys=True)}")


# No shrinking: a failure is reported as drawn (shrinking one took minutes).
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, phases=PHASES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(args=configs())
def test_any_value_of_any_key_runs_or_is_one_line(gdexp, store, tally, args):
    outcome = _check(gdexp, store, args)
    tally["examples"] += 1
    tally[outcome] += 1


@settings(max_examples=EXAMPLES // 8, derandomize=True, deadline=None, database=None, phases=PHASES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(args=configs(), second=SCALAR)
def test_a_sweep_with_one_bad_value_anywhere_creates_no_run(gdexp, store, tally, args, second):
    """A sweep over a fuzzed key's value and a second value: both valid and it runs (exit 0, or 1
    when runs failed), else one line and no run at all, the parent included."""
    key, value = args[-1].split("=", 1)
    before = len(all_runs(store))
    code, out, err = gdexp("-m", *args[:-1], f"{key}={value},{encode(second)}")
    assert "Traceback" not in err, (args, err)
    runs = all_runs(store)
    assert not [r for r in runs if r.info.status == "RUNNING"], args
    tally["sweeps"] += 1
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("gdexp: error: ") and len(runs) == before, (args, err)
        tally["sweeps refused"] += 1
    else:
        assert code in (0, 1) and len(runs) > before, (args, code, err)
        tally["sweeps ran"] += 1
