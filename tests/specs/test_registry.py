"""One registry: each conf/{loss,optimizer,schedule} option names one implementation with `_target_`, and back.

The implementation's signature is the schema: an option's keys are its target's
keyword arguments, its values their defaults (except where a difference is on
purpose, listed in ON_PURPOSE), and a key the target does not take is refused
on the command line with one line listing the valid keys, before any run exists.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from gdexp.core.losses import LOSSES
from gdexp.specs.torch_loss import torch_module
from gdexp.core.optimizers import OPTIMIZERS
from gdexp.core.params import RESERVED, check_section, schema
from gdexp.specs.registry import SUPPLIED
from gdexp.core.schedules import SCHEDULES
from gdexp.specs.run_spec import LOSS_KEYS
from gdexp.specs.targets import is_gdexp_target, resolve
from gdexp.hydra.paths import conf_dir

# loss=torch is gdexp's too, but runs the user's network: it lives with the other user-code loss in
# gdexp.specs (it imports user modules), not among the core's built-in LOSSES.
REGISTRIES = {"loss": {**LOSSES, "torch": torch_module}, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}
# Keys of a section that are gdexp's, not the target's (valid in the section, absent from the signature).
GDEXP_KEYS = {"loss": LOSS_KEYS}
# The option for a loss from the user's own module: no implementation of gdexp's behind it.
USER_OPTIONS = {("loss", "custom")}
# Values of an option that differ from its target's default, and why.
ON_PURPOSE = {
    ("loss", "expression", "expr"): "required in code; the option shows Rosenbrock's formula as the example",
    ("loss", "mlp", "init_seed"): "null = the run's seed (specs.run_spec.build_spec fills it); the code's 0 is for scripts",
    ("loss", "torch", "model"): "required in code; the user gives loss.model=package.module.name",
}


def options() -> list[tuple[str, str, dict]]:
    """(group, option, its YAML) for every file in conf/loss, conf/optimizer, conf/schedule."""
    return [(group, path.stem, yaml.safe_load(path.read_text()) or {})
            for group in REGISTRIES for path in sorted((conf_dir() / group).glob("*.yaml"))]


OPTIONS = options()
BUILT_IN = [(g, o, node) for g, o, node in OPTIONS if (g, o) not in USER_OPTIONS]


def target_of(group: str, node: dict):
    return resolve(node["_target_"], f"{group}._target_", None)


def test_the_tables_are_not_empty():
    """So that the table-driven tests below cannot pass on nothing."""
    assert {g for g, _, _ in BUILT_IN} == set(REGISTRIES)
    assert len(BUILT_IN) == sum(len(r) for r in REGISTRIES.values()) and all(REGISTRIES.values())


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_every_registered_implementation_has_exactly_one_option_of_its_name(group):
    files = {}
    for g, option, node in BUILT_IN:
        if g == group:
            files.setdefault(id(target_of(g, node)), []).append(option)
    for name, implementation in REGISTRIES[group].items():
        assert files.get(id(implementation)) == [name], f"{group} {name}: options {files.get(id(implementation))}"


@pytest.mark.parametrize("group,option,node", BUILT_IN, ids=[f"{g}={o}" for g, o, _ in BUILT_IN])
def test_every_option_names_one_registered_implementation_of_gdexp(group, option, node):
    target = target_of(group, node)
    assert is_gdexp_target(node["_target_"])
    assert [name for name, impl in REGISTRIES[group].items() if impl is target] == [option]


def test_the_users_option_names_no_implementation():
    (node,) = [n for g, o, n in OPTIONS if (g, o) == ("loss", "custom")]
    assert node["_target_"] == "???"  # the user gives loss._target_=package.module.name
    assert set(node) == {"_target_", "dim", "check_grad"}


@pytest.mark.parametrize("group,option,node", BUILT_IN, ids=[f"{g}={o}" for g, o, _ in BUILT_IN])
def test_an_options_keys_are_its_targets_signature_in_order(group, option, node):
    signature = [k for k in schema(target_of(group, node)) if k not in SUPPLIED.get(group, {})]
    keys = [k for k in node if k not in RESERVED]
    assert [k for k in keys if k not in GDEXP_KEYS.get(group, ())] == signature
    assert not set(node) & set(SUPPLIED.get(group, {}))  # gdexp passes these itself
    assert "name" not in node  # the display name defaults to the target's own


@pytest.mark.parametrize("group,option,node", BUILT_IN, ids=[f"{g}={o}" for g, o, _ in BUILT_IN])
def test_an_options_values_are_its_targets_defaults_or_differ_on_purpose(group, option, node):
    target = target_of(group, node)
    differ = {}
    for key, p in schema(target).items():
        if key in node:
            default = list(p.default) if isinstance(p.default, tuple) else p.default
            if default is inspect.Parameter.empty or node[key] != default:
                differ[key] = (node[key], None if default is inspect.Parameter.empty else default)
    expected = {k for (g, o, k) in ON_PURPOSE if (g, o) == (group, option)}
    assert set(differ) == expected, differ
    # and the option's values pass the signature's own checks (a null `*seed` of a loss is the
    # run's seed when planned: specs.run_spec.plan)
    section = {k: 0 if v is None and group == "loss" and k.endswith("seed") else v
               for k, v in node.items() if k not in (*RESERVED, *GDEXP_KEYS.get(group, ()))}
    check_section(group, target, section, option, supplied=tuple(SUPPLIED.get(group, {})))


def test_the_differences_on_purpose_are_real():
    """An entry of ON_PURPOSE that no longer differs must go (the test above would not see it)."""
    for group, option, key in ON_PURPOSE:
        (node,) = [n for g, o, n in OPTIONS if (g, o) == (group, option)]
        default = schema(target_of(group, node))[key].default
        assert default is inspect.Parameter.empty or node[key] != default


# --- unknown keys on the command line ----------------------------------------------------

def valid_keys(group: str, node: dict) -> str:
    """What the one-line error lists: the signature's keys, then gdexp's own keys of the section."""
    keys = [k for k in node if k not in RESERVED]
    return ", ".join(keys + [k for k in GDEXP_KEYS.get(group, ()) if k not in keys]) or "none"


def refused(gdexp, *args: str) -> str:
    """The one line gdexp prints for refused input (exit status 2), after checking nothing was recorded."""
    code, out, err = gdexp(*args, "stopping.maxiter=5")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert not Path("mlflow.db").exists()  # refused before any run (or store) exists
    return lines[0]


@pytest.mark.parametrize("group,option,node", BUILT_IN, ids=[f"{g}={o}" for g, o, _ in BUILT_IN])
def test_a_key_added_with_plus_is_refused_listing_the_valid_keys(gdexp, group, option, node):
    line = refused(gdexp, f"{group}={option}", f"+{group}.nope=1")
    assert line == f"gdexp: error: {group}.nope=1: not a key of {group} {option}; valid keys: {valid_keys(group, node)}"


@pytest.mark.parametrize("args,line", [
    (["optimizer.lrr=0.1"], "optimizer.lrr=0.1: not a config key; valid keys of optimizer=gd: lr, weight_decay"),
    (["loss=quadratic", "loss.dims=3"],
     "loss.dims=3: not a config key; valid keys of loss=quadratic: eigenvalues, center, rotate, seed"),
    (["schedule=step", "schedule.gama=0.5"],
     "schedule.gama=0.5: not a config key; valid keys of schedule=step: step_size, gamma"),
    (["schedule.T_max=5"], "schedule.T_max=5: not a config key; valid keys of schedule=constant: none"),
    # a sweep over options: the first option that lacks the key is named
    (["-m", "optimizer=adam,gd", "optimizer.beta1=0.8"],
     "optimizer.beta1=0.8: not a config key; valid keys of optimizer=gd: lr, weight_decay"),
    (["-m", "optimizer=gd,adam", "+optimizer.beta1=0.8"],
     "optimizer.beta1=0.8: not a key of optimizer gd; valid keys: lr, weight_decay "
     "(job #0: optimizer=gd +optimizer.beta1=0.8 stopping.maxiter=5)"),
    (["+schedule.maxiter=5"], "schedule.maxiter=5: is the run's budget: set stopping.maxiter"),
    # the sections of the typed schema (gdexp.hydra.schema), not of the registry
    (["stopping.max_iter=5"], "stopping.max_iter=5: not a config key; valid keys of stopping: "
                              "maxiter, gtol, patience, min_delta, divergence_factor, early_stop_threshold, "
                              "prune, prune_eta, prune_min_steps"),
    (["tracking.curve=5"], "tracking.curve=5: not a config key; valid keys of tracking: "
                           "uri, experiment, curve_points, eval_every, sharpness_every, live_every"),
    (["sed=1"], "sed=1: not a config key; valid keys: loss, optimizer, schedule, stopping, tracking, summary, init, seed"),
    # Hydra's own keys are shown by --cfg hydra, not --cfg job
    (["-m", "optimizer.lr=0.1,0.2", "hydra.sweeper.bogus=1"],
     "hydra.sweeper.bogus=1: not a config key; see `gdexp --cfg hydra` for the valid keys"),
], ids=["value", "loss", "schedule", "no-keys", "sweep", "sweep-plus", "supplied", "stopping", "tracking", "top",
        "hydra"])
def test_an_unknown_key_is_refused_in_one_line(gdexp, args, line):
    assert refused(gdexp, *args) == f"gdexp: error: {line}"
