"""The private Hydra, OmegaConf and plugin APIs gdexp uses (gdexp/hydra/internals.py), as gdexp uses them.

Each has no stability promise: an update of hydra-core, omegaconf or
hydra-ray-launcher that moves or changes one fails here, naming it, rather
than somewhere in a sweep. And no other module reaches past the fence.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from gdexp.hydra import internals
from test_architecture import MODULES, imported

FENCED = ("ConfigLoaderImpl", "get_overrides_dirname", "get_omega_conf_dumper", "apply_overrides",
          "start_ray", "BasicSweeper", "run_app", "job_error", "end_reused_joblib_workers")
FRAMEWORKS = ("hydra", "omegaconf", "hydra_plugins")


def parsed(*overrides: str):
    return OverridesParser.create().parse_overrides(list(overrides))


@pytest.mark.parametrize("name", FENCED)
def test_every_fenced_name_exists(name):
    assert callable(getattr(internals, name)), f"gdexp.hydra.internals.{name} is gone"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        internals.Nope  # noqa: B018


# --- apply_overrides: Hydra's own override logic on a composed template (gdexp.hydra.compose) ----

@pytest.fixture
def template():
    """A struct config as Hydra composes one: typed fields from a schema, keys closed."""
    from dataclasses import dataclass, field

    @dataclass
    class Optim:
        lr: float = 0.001
        steps: int = 10
        names: list = field(default_factory=lambda: ["a"])

    # a schema's dataclass (stopping, tracking) and a YAML option's dict (loss, optimizer)
    cfg = OmegaConf.create({"optimizer": Optim, "loss": {"a": 1.0}, "seed": 0})
    OmegaConf.set_struct(cfg, True)
    return cfg


def test_apply_overrides_sets_adds_and_deletes_with_types(template):
    internals.apply_overrides(parsed("optimizer.lr=0.5", "optimizer.steps=3", "+optimizer.extra=x",
                                     "~seed", "++optimizer.names=[b,c]", "+loss.b=2"), template)
    assert OmegaConf.to_container(template) == {"optimizer": {"lr": 0.5, "steps": 3, "names": ["b", "c"],
                                                              "extra": "x"}, "loss": {"a": 1.0, "b": 2}}
    assert type(template.optimizer.lr) is float and type(template.optimizer.steps) is int


@pytest.mark.parametrize("override,says,line", [
    ("optimizer.lrr=1", ["Could not override 'optimizer.lrr'", "Key 'lrr' not in 'Optim'"],
     "optimizer.lrr=1: not a config key"),
    ("loss.b=1", ["Could not override 'loss.b'", "Key 'b' is not in struct", "full_key: loss.b"],
     "loss.b=1: not a config key"),
    ("optimizer.steps=abc", ["Value 'abc' of type 'str' could not be converted to Integer",
                             "full_key: optimizer.steps"], "optimizer.steps='abc': must be an integer"),
    ("+optimizer.lr=1", ["Could not append to config. An item is already at 'optimizer.lr'"],
     "Could not append to config. An item is already at 'optimizer.lr'."),
], ids=["dataclass-key", "dict-key", "type", "append"])
def test_apply_overrides_refuses_in_words_gdexp_turns_into_one_line(template, override, says, line):
    """Hydra's and OmegaConf's messages, and the line gdexp.commands.main.hydra_error makes of them."""
    from gdexp.commands.main import hydra_error

    with pytest.raises(ConfigCompositionException) as info:
        internals.apply_overrides(parsed(override), template)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    text = "\n".join(chain)
    assert all(s in text for s in says), text
    assert hydra_error(info.value, [override]).startswith(line)


def test_apply_overrides_is_a_static_method_taking_overrides_then_config():
    assert list(inspect.signature(internals.ConfigLoaderImpl._apply_overrides_to_config).parameters) == \
        ["overrides", "cfg"]


# --- get_overrides_dirname: hydra.job.override_dirname of each job (gdexp.hydra.compose) -------

def test_get_overrides_dirname_format():
    overrides = parsed("optimizer.lr=0.1", "loss=booth", "seed=3", "+loss.batch_size=8")
    assert internals.get_overrides_dirname(overrides=overrides, kv_sep=":", item_sep="/",
                                           exclude_keys=["seed"]) == "+loss.batch_size:8/loss:booth/optimizer.lr:0.1"


def test_get_overrides_dirname_equals_hydras_own(compose):
    overrides = ["optimizer.lr=0.1", "loss=booth", "seed=3"]
    cfg = compose(*overrides, "hydra.job.config.override_dirname.exclude_keys=[seed]",
                  "hydra.job.config.override_dirname.kv_sep=@", raw=True)
    conf = cfg.hydra.job.config.override_dirname
    ours = internals.get_overrides_dirname(overrides=parsed(*overrides), kv_sep=conf.kv_sep,
                                           item_sep=conf.item_sep, exclude_keys=list(conf.exclude_keys))
    assert ours == cfg.hydra.job.override_dirname == "loss@booth,optimizer.lr@0.1"


# --- BasicSweeper: what gdexp's grid sweeper (sweepers/grid.py) inherits ------------------------

@pytest.fixture
def basic_sweeper():
    from hydra.core.plugins import Plugins

    Plugins.instance()  # the first plugin scan re-executes Hydra's core plugins: subclass after it
    return internals.BasicSweeper


def test_split_arguments_is_the_cartesian_product_in_batches(basic_sweeper):
    overrides = parsed("a=1,2", "b=x", "c=3,4")
    jobs = [["a=1", "b=x", "c=3"], ["a=1", "b=x", "c=4"], ["a=2", "b=x", "c=3"], ["a=2", "b=x", "c=4"]]
    assert basic_sweeper.split_arguments(overrides, None) == [jobs]
    assert basic_sweeper.split_arguments(overrides, 3) == [jobs[:3], jobs[3:]]


def test_a_subclass_gets_params_batches_and_iteration(basic_sweeper):
    class Sub(basic_sweeper):  # as GridSweeper: constructed from hydra.sweeper's node
        pass

    sweeper = Sub(max_batch_size=2, params={"optimizer.lr": "0.1,0.2"})
    assert sweeper.params == {"optimizer.lr": "0.1,0.2"} and sweeper.max_batch_size == 2
    sweeper.overrides = basic_sweeper.split_arguments(parsed("a=1,2,3"), sweeper.max_batch_size)
    batches = []
    while not sweeper.is_done():
        batches.append(sweeper.get_job_batch())
    assert batches == [[["a=1"], ["a=2"]], [["a=3"]]]
    assert list(inspect.signature(basic_sweeper.setup).parameters) == ["self", "hydra_context", "task_function",
                                                                       "config"]


# --- get_omega_conf_dumper: job folders' YAML byte for byte as Hydra's (launchers/batched.py) ----

def test_the_dumper_writes_what_omegaconf_to_yaml_writes(tmp_path):
    from gdexp.hydra.launchers.jobfiles import dump

    obj = {"loss": {"_target_": "gdexp.core.losses.Quadratic", "eigenvalues": [1.0, 1e-08, 100.0]},
           "strings": ["true", "null", "1e-3", "0.5", "~", "yes", "λ", "a: b", "", "multi\nline"],
           "none": None, "flag": False, "count": 3, "big": 1.0e+20, "nested": {"empty": [], "map": {}}}
    text = dump(obj)
    assert text == OmegaConf.to_yaml(OmegaConf.create(obj))
    assert yaml.safe_load(text) == obj  # and it reads back as written: "true" stays a string


# --- start_ray: hydra-ray-launcher's ray.init with its config (launchers/ray.py) ----------------

def test_start_ray_calls_ray_init_with_the_config_once(monkeypatch):
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        with pytest.raises(ModuleNotFoundError, match="hydra_ray_launcher"):
            internals.start_ray(OmegaConf.create({}))
        return
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: bool(calls))
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    internals.start_ray(OmegaConf.create({"address": None, "num_cpus": 2}))
    internals.start_ray(OmegaConf.create({"address": None, "num_cpus": 2}))  # already running: no second init
    assert calls == [{"address": None, "num_cpus": 2}]


# --- the fences: nothing else reaches into a framework's privates ------------------------------

# Each framework's private names are reached from one module of gdexp only.
FENCES = {"hydra": "gdexp.hydra.internals", "omegaconf": "gdexp.hydra.internals",
          "hydra_plugins": "gdexp.hydra.internals", "joblib": "gdexp.hydra.internals",
          "mlflow": "gdexp.tracking.fast.fence"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(name: str, frameworks=tuple(FENCES)) -> list[str]:
    """Imports of a private module or name of `frameworks`, `Imported._private` attributes, and
    `getattr(x, "_private")` with a string (which reaches past any fence, whatever x is)."""
    path, is_package = MODULES[name]
    found = [f"{name}:{line} imports {target}" for target, line in imported(name, path, is_package)
             if target.split(".")[0] in frameworks and any(_private(p) for p in target.split(".")[1:])]
    tree = ast.parse(path.read_text())
    bound = {(a.asname or a.name).split(".")[0] for node in ast.walk(tree)
             if isinstance(node, (ast.Import, ast.ImportFrom))
             and ((node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
             in frameworks for a in node.names}
    found += [f"{name}:{node.lineno} uses {node.value.id}.{node.attr}" for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and _private(node.attr)
              and isinstance(node.value, ast.Name) and node.value.id in bound]
    found += [f"{name}:{node.lineno} getattr {node.args[1].value!r}" for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _private(node.args[1].value)]
    return found


def test_the_fence_check_sees_a_private_import_attribute_and_getattr(tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("from omegaconf import OmegaConf\n\ndef f():\n    from hydra._internal.utils import x\n"
                   "    return OmegaConf._get_obj_type(x)\n\ndef g(ret):\n    return getattr(ret, '_return_value')\n"
                   "\ndef h():\n    from mlflow.utils.name_utils import _generate_random_name\n")
    monkeypatch.setitem(MODULES, "gdexp.bad", (bad, False))
    assert sorted(private_uses("gdexp.bad")) == sorted([
        "gdexp.bad:4 imports hydra._internal.utils.x", "gdexp.bad:4 imports hydra._internal.utils",
        "gdexp.bad:5 uses OmegaConf._get_obj_type", "gdexp.bad:8 getattr '_return_value'",
        "gdexp.bad:11 imports mlflow.utils.name_utils._generate_random_name"])


@pytest.mark.parametrize("framework", sorted(FENCES))
def test_no_module_but_its_fence_uses_a_private_api(framework):
    found = [use for name in MODULES if name != FENCES[framework]
             for use in private_uses(name, (framework,)) if "getattr" not in use]
    assert found == []


def test_no_module_but_the_fences_getattrs_a_private_name():
    found = [use for name in MODULES if name not in set(FENCES.values())
             for use in private_uses(name, ()) if "getattr" in use]
    assert found == []


def test_the_grid_sweeper_gets_basic_sweeper_from_the_fence():
    """The one subclass of a private class: it must come through internals (lazily, see there)."""
    path, is_package = MODULES["gdexp.hydra.sweepers.grid"]
    assert "gdexp.hydra.internals.BasicSweeper" in {t for t, _ in imported("gdexp.hydra.sweepers.grid", path, is_package)}


@pytest.mark.parametrize("overrides", [
    [], ["optimizer.lr=0.1,0.2", "stopping.maxiter=5"], ["hydra.mode=MULTIRUN"], ["hydra.mode=RUN", "seed=1"],
    ["+hydra.mode=MULTIRUN"], ["hydra.mode=multirun"], ["~hydra.mode"], ["+sweep=nope"], ["+sweep=lr_grid,mlp_lr"],
    ["+sweep=lr_grid", "hydra.mode=RUN"], ["optimizer=adam", "+sweep=lr_find", "stopping.maxiter=5"],
    *[[f"+sweep={name}"] for name in ("lr_grid", "mlp_lr", "lr_optuna", "lr_range_test", "batch_lr")],
], ids=repr)
def test_the_mode_from_the_overrides_is_the_one_hydras_get_mode_composes(overrides):
    """gdexp answers Hydra's get_mode from the overrides (internals.mode_of), or leaves it to Hydra
    (None); where it answers, the answer is Hydra's own, from its whole composition."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path

    from gdexp.hydra.named_sweeps import register_sweeps
    from gdexp.hydra.paths import conf_dir
    from gdexp.hydra.schema import register_configs

    register_configs()
    register_sweeps()
    hydra = Hydra.create_main_hydra2("gdexp", create_automatic_config_search_path(None, None, str(conf_dir())))
    try:
        known = internals.mode_of(overrides)
        if known is not None:
            assert known[0] == hydra.get_mode("config", list(overrides))
        assert (known is None) == (overrides in (["hydra.mode=multirun"], ["~hydra.mode"], ["+sweep=nope"],
                                                 ["+sweep=lr_grid,mlp_lr"], ["+sweep=lr_grid", "hydra.mode=RUN"]))
    finally:
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
