"""The `gdexp` command line before Hydra reads it.

Hydra's override grammar has no log-spaced grid, lets a key given twice
silently drop the first, applies a multirun's value overrides to the
*default* option of a group before any job exists (so
``-m optimizer=momentum,nesterov optimizer.momentum=0.5`` fails against
``gd``), and names output folders by the second (two sweeps started
together share one). Each is fixed here, on the arguments, before Hydra
parses them.
"""
from __future__ import annotations

import re
import secrets
import time

from gdexp.core.errors import ConfigError
# Deprecated in 0.2: the `budget` group is now `stopping` (gdexp.specs.legacy holds the map).
from gdexp.specs.legacy import RENAMED, warn_renamed
from gdexp.hydra.grids import expand

# Groups whose options name different implementations (`_target_`), so their keys differ from
# option to option (gdexp.specs.registry).
TARGET_GROUPS = ("loss", "optimizer", "schedule")

# Options that exist only with one of gdexp's extras installed: (group, option) -> (extra, a module it installs).
NEEDS_EXTRA = {
    ("hydra/launcher", "ray"): ("ray", "hydra_plugins.hydra_ray_launcher"),
    ("hydra/launcher", "submitit_local"): ("slurm", "hydra_plugins.hydra_submitit_launcher"),
    ("hydra/launcher", "submitit_slurm"): ("slurm", "hydra_plugins.hydra_submitit_launcher"),
}
# Hydra's flags that print and run nothing, so write no folder (--info would also take a
# trailing override as its optional value).
_NOTHING_RUNS = {"--info", "-i", "--cfg", "-c", "--shell-completion", "-sc", "--hydra-help", "--version"}
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--info", "-i", "--shell-completion", "-sc", "--experimental-rerun"}


def prepare(argv: list[str]) -> list[str]:
    """The arguments Hydra gets: grids expanded, keys checked for repeats, a multirun's values of
    target groups deferred to each job, output folders made unique, flags before overrides.

    Raises:
        ConfigError: a grid that cannot be expanded, a key given twice, or an option whose
            extra is not installed.
    """
    flags, positional = split_flags(argv)
    positional = [rewritten(a) if "=" in a else a for a in positional]
    overrides = [a for a in positional if "=" in a]
    check_extras(overrides)
    out = [expand(a) if "=" in a else a for a in positional]
    _refuse_repeats([a for a in out if "=" in a])
    multirun = is_multirun(argv)
    if multirun:
        out = [_deferred(a) if "=" in a else a for a in out]
    # Flags first, then every override: Hydra's argparse takes one run of overrides, so
    # `gdexp loss=booth -m optimizer.lr=0.1,0.2` (or ours added after a trailing -m) would fail.
    return flags + out + unique_output_dir(argv, multirun)


def check_extras(overrides: list[str]) -> None:
    """Refuse an option whose extra is not installed, naming the extra (before Hydra's
    "no such option" or its instantiation traceback).

    Raises:
        ConfigError: ``hydra/launcher='ray': needs gdexp's ray extra: pip install 'gdexp[ray]'``.
    """
    from importlib.util import find_spec

    for a in overrides:
        key, _, value = a.partition("=")
        needed = NEEDS_EXTRA.get((key.lstrip("+~"), value.strip()))
        if needed is None:
            continue
        extra, module = needed
        try:
            found = find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            raise ConfigError(key.lstrip("+~"), value.strip(),
                              f"needs gdexp's {extra} extra: pip install 'gdexp[{extra}]'")


def renamed(override: str) -> str:
    """A deprecated key under its new name, with a one-line warning (once per key and process).

    Raises:
        ConfigError: a key under `budget` that never existed (listing the valid ones).
    """
    prefix = override[:len(override) - len(override.lstrip("+~"))]
    key, eq, value = override[len(prefix):].partition("=")
    if key == "budget":  # the group selection budget=default
        return f"{prefix}stopping={value}"
    if not key.startswith("budget."):
        return override
    if key not in RENAMED:
        raise ConfigError(key, value, "not a config key (budget is now stopping); valid keys: "
                          + ", ".join(RENAMED.values()))
    warn_renamed(key)
    return f"{prefix.replace('+', '')}{RENAMED[key]}{eq}{value}"


def is_multirun(argv: list[str]) -> bool:
    """-m/--multirun, hydra.mode=MULTIRUN, or a named sweep (every sweep file is a multirun)."""
    from gdexp.hydra.named_sweeps import is_multirun as sweep_is_multirun

    if "-m" in argv or "--multirun" in argv:
        return True
    for a in _overrides(argv):
        key, _, value = a.partition("=")
        if key.lstrip("+~") == "hydra.mode" and value.strip() == "MULTIRUN":
            return True
        if key.lstrip("+~") == "sweep" and sweep_is_multirun(value.strip()):
            return True
    return False


def unique_output_dir(argv: list[str], multirun: bool) -> list[str]:
    """`hydra.sweep.dir=multirun/DATE/TIME-XXXXXX` (or hydra.run.dir for one run) unless given:
    Hydra's default names the folder by the second, and two commands started in the same
    second would write their job folders and multirun.yaml over each other's."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = {a.partition("=")[0].lstrip("+~") for a in _overrides(argv)}
    if key in given or _sweep_sets(argv, key) or any(a in _NOTHING_RUNS for a in argv):
        return []
    root = "multirun" if multirun else "outputs"
    return [f"{key}={root}/{time.strftime('%Y-%m-%d')}/{time.strftime('%H-%M-%S')}-{secrets.token_hex(3)}"]


def _overrides(argv: list[str]) -> list[str]:
    """The key=value arguments (not flags, not a flag's value)."""
    return [a for a in split_flags(argv)[1] if "=" in a]


def split_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides), each in the order given.

    >>> split_flags(["loss=booth", "-m", "optimizer.lr=0.1,0.2", "--config-name", "x", "~init"])
    (['-m', '--config-name', 'x'], ['loss=booth', 'optimizer.lr=0.1,0.2', '~init'])
    """
    flags, positional, value_of_flag = [], [], False
    for a in argv:
        if value_of_flag or a.startswith("-"):
            flags.append(a)
            value_of_flag = not value_of_flag and a in _FLAGS_WITH_VALUE
        else:
            positional.append(a)
    return flags, positional


def rewritten(override: str) -> str:
    """An override as gdexp hands it to Hydra: a deprecated key under its new name, a formula
    quoted (gdexp.hydra.precheck leaves to Hydra what this changes)."""
    return _quoted_formula(renamed(override))


def _quoted_formula(arg: str) -> str:
    """`loss.expr=(1 - x)**2` as Hydra must read it: quoted (its grammar takes `(` and `sin(...)`
    for its own), so the issue's command works as typed after the shell removed its quotes.

    >>> _quoted_formula("loss.expr=(1 - x)**2 + sin(y)")
    "loss.expr='(1 - x)**2 + sin(y)'"
    """
    key, eq, value = arg.partition("=")
    if key.lstrip("+") != "loss.expr" or not value or value[0] in "'\"":
        return arg
    return f"{key}{eq}'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _refuse_repeats(overrides: list[str]) -> None:
    seen: dict[str, str] = {}
    for a in overrides:
        key = a.partition("=")[0].lstrip("+~")
        if key in seen:
            raise ConfigError(key, a.partition("=")[2],
                              f"given twice ({seen[key]} and {a}): give one value or one list")
        seen[key] = a


_PLAIN_LIST = re.compile(r"[^()\[\]{}'\"\\]*,[^()\[\]{}'\"\\]*")


def _deferred(arg: str) -> str:
    """`loss.key=v` -> `loss.key=choice(v)` in a multirun: a sweep of one value is applied to each
    job's own config (and checked against that job's option), not to the default option."""
    key, _, value = arg.partition("=")
    if key.startswith(("+", "~")) or key.split(".", 1)[0] not in TARGET_GROUPS or "." not in key:
        return arg
    if _PLAIN_LIST.fullmatch(value):
        # A comma outside quotes, brackets and calls: a sweep in Hydra's grammar (or an error it
        # reports), kept as given either way; a grid expanded to 1,000 values takes ~0.2 s to parse.
        return arg
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_override(arg)
    except Exception:
        return arg  # Hydra will report it, naming the problem
    if parsed.is_sweep_override() or parsed.value() is None:  # Hydra's choice() takes no null
        return arg
    return f"{key}=choice({value})"


def _sweep_sets(argv: list[str], key: str) -> bool:
    """Whether the named sweep on the command line sets `key` in its file."""
    from omegaconf import OmegaConf

    from gdexp.hydra.named_sweeps import available

    for a in _overrides(argv):
        name, _, value = a.partition("=")
        if name.lstrip("+~") == "sweep" and value.strip() in available():
            if OmegaConf.select(OmegaConf.load(available()[value.strip()]), key) is not None:
                return True
    return False

