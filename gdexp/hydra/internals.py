"""Every private Hydra (and plugin) API gdexp uses, in one place.

Hydra 1.3 keeps these under `_internal` or `_utils`; they have no stability
promise, so each is imported here only, and tests/hydra/test_internals.py
fails loudly (naming it) if an update of hydra-core, omegaconf or
hydra-ray-launcher moves or changes one. pyproject pins hydra-core < 1.4.
"""
from __future__ import annotations

from contextlib import contextmanager

# Hydra's own override logic (types checked against the schema), applied by gdexp's
# composer to a template config instead of a full compose per job (compose.py).
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname  # noqa: F401
import yaml
# The YAML dumper OmegaConf.to_yaml uses, so job folders match Hydra's byte for byte.
from omegaconf._utils import get_omega_conf_dumper


def fast_omega_conf_dumper():
    """OmegaConf's dumper with libyaml's C emitter where present: the same representers (so the
    same text, tests/hydra/test_sweeps.py compares job folders with Hydra's), 5-10x faster to write.
    OmegaConf's dumper (pure Python) otherwise."""
    python = get_omega_conf_dumper()
    if not getattr(yaml, "__with_libyaml__", False):
        return python
    if _FAST.get("dumper") is None:
        dumper = type("FastOmegaConfDumper", (yaml.CDumper,), {})
        dumper.yaml_representers = dict(python.yaml_representers)
        dumper.yaml_multi_representers = dict(python.yaml_multi_representers)
        _FAST["dumper"] = dumper
    return _FAST["dumper"]


_FAST: dict = {}


def apply_overrides(overrides: list, cfg) -> None:
    """Apply parsed value overrides to `cfg` in place, as Hydra's compose does."""
    ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)


def start_ray(init_cfg) -> None:
    """hydra-ray-launcher's ray.init with its config (the `ray` extra)."""
    from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray as _start_ray

    _start_ray(init_cfg)


def run_app(argv: list[str], task_function, config_dir: str, config_name: str) -> None:
    """Hydra's app (what ``@hydra.main`` runs) on `argv`, not on sys.argv.

    ``hydra.main`` parses sys.argv itself; its inner runner takes the parsed
    arguments, so the caller's sys.argv is left alone.
    """
    from hydra import version
    from hydra._internal.utils import _run_hydra, get_args_parser

    version.setbase(None)  # as @hydra.main(version_base=None): this Hydra's defaults
    parser = get_args_parser()
    args = parser.parse_args(argv)
    with _mode_from_overrides(args):
        _run_hydra(args=args, args_parser=parser, task_function=task_function, config_path=config_dir,
                   config_name=config_name)


@contextmanager
def _mode_from_overrides(args):
    """Hydra's `Hydra.get_mode` answered from the overrides where they decide it, without the
    whole composition it makes to read ``hydra.mode`` (before the composition of the run itself:
    ~0.08 s of every command, a third of a refused value's time in-process).

    In gdexp's config tree only an override of hydra.mode (``RUN``, ``MULTIRUN``) or a named
    sweep's file (sweeps/, every shipped one ``MULTIRUN``) sets it; otherwise it is None. With
    another primary config or config folder (--config-name, --config-dir, --config-path), or an
    override it cannot read (``~hydra.mode``, two of them), Hydra's own get_mode answers.
    tests/hydra/test_internals.py holds the two equal.
    """
    from hydra._internal.hydra import Hydra

    known = None if (args.config_name or args.config_dir or args.config_path) else mode_of(args.overrides)
    if known is None:
        yield
        return
    real = Hydra.get_mode
    Hydra.get_mode = lambda self, config_name, overrides: known[0]
    try:
        yield
    finally:
        Hydra.get_mode = real


def mode_of(overrides: list[str]) -> tuple | None:
    """(hydra.mode, as Hydra's get_mode returns it: a RunMode or None) for gdexp's config tree and
    these overrides; None where they do not decide it alone."""
    from hydra.types import RunMode

    from gdexp.hydra.named_sweeps import available, mode_in

    found = [o for o in overrides if o.partition("=")[0].lstrip("+~") in ("hydra.mode", "sweep")]
    if not found:
        return (None,)
    if len(found) > 1 or found[0].startswith("~"):
        return None
    key, _, value = found[0].partition("=")
    value = value.strip()
    if key.lstrip("+") == "hydra.mode":
        return (RunMode[value],) if value in ("RUN", "MULTIRUN") else None
    path = available().get(value)
    if path is None:
        return None  # Hydra's own error, from its own composition
    mode = mode_in(path)
    return (None,) if mode is None else (RunMode[mode],) if mode in ("RUN", "MULTIRUN") else None


def job_error(ret) -> BaseException | None:
    """The exception a FAILED job raised, as Hydra's JobReturn keeps it (its `return_value`
    property re-raises it and writes "Error executing job" to stderr; gdexp says it once itself)."""
    return getattr(ret, "_return_value", None)


def end_reused_joblib_workers() -> None:
    """End the worker processes joblib (loky) keeps from an earlier sweep of this process.

    They hold the environment they started with (that sweep's parent run, store
    and folder) and would record the next sweep's jobs there. joblib has no
    public call for it: its reusable executor is a module global.
    """
    import sys

    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)


def __getattr__(name: str):
    # BasicSweeper: the basic sweeper's cartesian product of comma lists and its batching,
    # which gdexp's grid sweeper (sweepers/grid.py) extends rather than copies. Imported only
    # when asked for: Hydra's first plugin scan re-executes hydra._internal.core_plugins, and
    # a subclass of the class imported before that scan fails in BasicSweeper.__init__. So the
    # scan happens first (it is once per process): importing sweepers/grid.py before any Hydra
    # app ran (pytest --doctest-modules does) made every later sweep of the process fail.
    if name == "BasicSweeper":
        from hydra.core.plugins import Plugins

        Plugins.instance()
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        return BasicSweeper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
