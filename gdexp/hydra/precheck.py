"""The command line's plain overrides checked before Hydra is imported: a bad value refused at once.

Hydra's import and its two compositions (one to learn ``hydra.mode``, one for the job) took most
of a second before ``job_spec`` refused ``gdexp optimizer.lr=-1``. For a command line of plain
``key=value`` overrides (``-m`` comma lists of them included), this module composes each job's
config from conf/ as Hydra would (config.yaml's defaults list, the chosen options' files, the
schema's typed sections: gdexp.hydra.schema) and plans the jobs with the same ``job_spec``, in
the order the sweeper plans them. The first refusal is raised as Hydra's path raises it, word
for word (a sweep's names the job). What this module cannot compose exactly as Hydra would is
left to Hydra: ``+``, ``~`` and ``hydra.*`` keys, Hydra's flags, quotes, interpolations, grids
and other functions, keys an option lacks, values the schema would convert, a refusal naming a
key the user did not type. So is any input it finds nothing wrong with: Hydra's path stays the
authority, this one only answers sooner. tests/hydra/test_precheck.py holds the two to the same
line, and the compositions to Hydra's.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

from gdexp.core.errors import ConfigError
from gdexp.hydra.argv import rewritten, split_flags
from gdexp.hydra.paths import conf_dir
from gdexp.hydra.schema import SCHEMAS, Config, job_refusal, job_spec

# A sweep of more jobs is left to the sweeper, which plans every job anyway: planning them here
# too costs a valid sweep ~0.5 ms a job, and a refused one is spared only Hydra's ~1 s start.
MAX_JOBS = 100

# A key gdexp reads: a top-level one (seed), a group (optimizer) or a key of a section (optimizer.lr).
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)?")
# An option of a group: a file conf/GROUP/OPTION.yaml.
_OPTION = re.compile(r"[A-Za-z0-9_-]+")
# Values whose characters Hydra's override grammar reads as text as written: no quote, escape,
# interpolation, bracket, call, colon or space (gdexp.hydra.argv leaves these as typed, too).
_PLAIN = re.compile(r"[A-Za-z0-9_.+/-]+")
# Hydra's tokens for a whole value (hydra/grammar/OverrideLexer.g4), in its order of precedence.
_UINT = r"(?:0|[1-9](?:_?[0-9])*)"
_POINT = rf"(?:{_UINT}\.|{_UINT}?\.[0-9](?:_?[0-9])*)"
_TOKENS = (
    (re.compile(rf"[+-]?(?:{_POINT}|(?:{_UINT}|{_POINT})[eE][+-]?[0-9](?:_?[0-9])*|[Ii][Nn][Ff]|[Nn][Aa][Nn])"),
     float),
    (re.compile(rf"[+-]?{_UINT}"), int),
    (re.compile(r"[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]"), lambda text: text.lower() == "true"),
    (re.compile(r"[Nn][Uu][Ll][Ll]"), lambda text: None),
)


class _Unusual(Exception):
    """Input this module does not compose as Hydra would: Hydra's path decides."""


def check_before_hydra(argv: list[str]) -> None:
    """Refuse `argv` (the `gdexp` command line) as Hydra's path would, where that is sure without Hydra.

    Returns None, leaving the command to Hydra, for input this module cannot compose as Hydra
    would and for input it finds nothing wrong with.

    Raises:
        ConfigError: the first job's refusal, as Hydra's path raises it: ``job_spec``'s, and in a
            sweep (``-m``) with the job named as gdexp.hydra.schema.job_refusal names it; only
            when it names a key the command line sets.
    """
    flags, overrides = split_flags(argv)
    if any(flag not in ("-m", "--multirun") for flag in flags):
        return  # --cfg, --info print; --config-name and the like compose another config
    try:
        jobs = _jobs(overrides, multirun=bool(flags))
        for num, job in enumerate(jobs):  # composed one by one: the sweeper stops at the first refusal too
            try:
                job_spec(_config(job, multirun=bool(flags)))
            except ConfigError as exc:
                if re.sub(r"\[\d+\]", "", exc.key) not in {key for key, _ in job}:
                    return  # a refusal of what the command line did not set: Hydra's path says it
                if not flags:
                    raise
                raise job_refusal(exc, num, [f"{key}={_text(value)}" for key, value in job]) from None
    except _Unusual:
        return


def _jobs(overrides: list[str], multirun: bool) -> list[tuple[tuple[str, Any], ...]]:
    """Each job's (key, value) overrides, in the order Hydra's basic sweeper makes them (the
    product of the comma lists, the last key varying fastest); one job without -m."""
    swept: dict[str, list] = {}
    for arg in overrides:
        key, eq, text = arg.partition("=")
        if not eq or not _KEY.fullmatch(key) or key in swept:
            raise _Unusual  # +key, ~key, hydra/launcher=..., hydra.run.dir=...; a key twice (argv refuses it)
        if _rewritten(arg) != arg:
            raise _Unusual  # a formula gdexp quotes for Hydra (loss.expr), a deprecated key renamed
        # A comma list is a sweep with -m; without, Hydra says to add -m.
        swept[key] = [_value(t) for t in (text.split(",") if multirun and "[" not in text else [text])]
    if math.prod(len(values) for values in swept.values()) > MAX_JOBS:
        raise _Unusual
    return list(itertools.product(*([(key, v) for v in values] for key, values in swept.items())))


def _rewritten(arg: str) -> str | None:
    """`arg` as gdexp hands it to Hydra (gdexp.hydra.argv.rewritten); None where that refuses it
    (a `budget.*` key that never existed: gdexp.hydra.argv.prepare says its line)."""
    try:
        return rewritten(arg)
    except ConfigError:
        return None


def _value(text: str):
    """A value as Hydra's override parser reads it: a number, bool, null or text, or a list of them.

    >>> [_value(t) for t in ("-1", "1e-3", "0.5", "1_000", "TRUE", "null", "adam", "1e-3x", "[1,2.0]")]
    [-1, 0.001, 0.5, 1000, True, None, 'adam', '1e-3x', [1, 2.0]]
    """
    if text.startswith("[") and text.endswith("]"):
        return [_value_of(t) for t in text[1:-1].split(",")] if text != "[]" else []
    return _value_of(text)


def _value_of(text: str):
    if not _PLAIN.fullmatch(text):
        raise _Unusual
    for token, convert in _TOKENS:
        if token.fullmatch(text):
            return convert(text)
    return text  # an identifier, or several tokens that Hydra joins into text as written


def _text(value) -> str:
    """A value as Hydra writes it into a job's overrides (its Override._get_value_element_as_str),
    for the characters _PLAIN lets through."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return str(value)


def _config(job: tuple[tuple[str, Any], ...], multirun: bool) -> dict:
    """The job's config as its task gets it from Hydra (gdexp.hydra.task.to_config), or in a
    sweep from gdexp.hydra.compose.JobComposer."""
    chosen = tuple((key, value) for key, value in job if key in _groups())
    if not all(isinstance(option, str) and _OPTION.fullmatch(option) for _, option in chosen):
        raise _Unusual  # an option named by a number, or by a path (loss=../x)
    composed, types = _composed(chosen)
    config = copy.deepcopy(composed)
    for key, value in job:
        if key in _groups():
            continue
        section, _, name = key.rpartition(".")
        node = config.get(section) if section else config
        if not isinstance(node, dict) or name not in node or isinstance(node[name], dict):
            raise _Unusual  # a key the option lacks (Hydra lists the valid ones), or a whole section
        typed = _typed(value, types.get(key, Any))
        # A sweep's job gets its values as Hydra's parser reads them, not typed by OmegaConf
        # (JobComposer._plain_values: init=[1] stays [1]); a single run, as OmegaConf types them.
        node[name] = value if multirun else typed
    return config


@lru_cache(maxsize=1)
def _groups() -> tuple[str, ...]:
    """The config groups of conf/config.yaml's defaults list that build a section of the config."""
    return tuple(group for entry in _defaults() for group in entry if group in _schema_fields())


@lru_cache(maxsize=64)
def _composed(chosen: tuple[tuple[str, str], ...]) -> tuple[dict, dict]:
    """conf/ composed with the `chosen` options, as Hydra composes it: (the config, the schema's
    type of each typed key, dotted)."""
    config, types = _structured(Config)
    for entry in _defaults():
        (group, option), = entry.items()
        if group not in _schema_fields():
            continue  # conf/plugins: Hydra's sweeper and launcher, no key of the config
        node = _yaml(conf_dir() / group / f"{dict(chosen).get(group, option)}.yaml")
        typed = _typed_by(group, node.pop("defaults", None))
        if typed is None:
            config[group] = node
            continue
        config[group], section_types = _structured(typed, f"{group}.")
        types.update(section_types)
        for name, value in node.items():
            if name not in config[group]:
                raise _Unusual
            config[group][name] = _typed(value, section_types[f"{group}.{name}"])
    own = _yaml(conf_dir() / "config.yaml")  # its _self_, last in its defaults list
    for key, value in own.items():
        if key in ("defaults", "hydra"):
            continue
        if key not in config or isinstance(config[key], dict):
            raise _Unusual
        config[key] = _typed(value, types.get(key, Any))
    if any(value is _MISSING for value in config.values()):
        raise _Unusual
    return config, types


@lru_cache(maxsize=1)
def _defaults() -> tuple[dict, ...]:
    """conf/config.yaml's defaults list: the schema first, {group: option} entries, _self_ last."""
    entries = _yaml(conf_dir() / "config.yaml").get("defaults")
    if not isinstance(entries, list) or entries[:1] != ["config_schema"] or entries[-1:] != ["_self_"]:
        raise _Unusual
    if not all(isinstance(e, dict) and len(e) == 1 for e in entries[1:-1]):
        raise _Unusual
    return tuple(entries[1:-1])


@lru_cache(maxsize=1)
def _schema_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(Config)}


def _typed_by(group: str, defaults) -> type | None:
    """The structured config an option of `group` builds on: the schema's for the group
    (``stopping: StoppingConf``), which an option names in its defaults list
    (``[/schema/stopping/default@_here_, _self_]``); None for an untyped section (loss)."""
    factory = _schema_fields()[group].default_factory
    typed = factory if dataclasses.is_dataclass(factory) else None
    if defaults is None:
        return typed
    match = re.fullmatch(r"/(schema/[\w/]+)@_here_", str(defaults[0])) if isinstance(defaults, list) else None
    named = SCHEMAS.get(match[1]) if match and defaults[1:] == ["_self_"] else None
    if named is None or typed not in (None, named):
        raise _Unusual  # an option built on another option, or on another schema
    return named


_MISSING = object()  # a field with no default: OmegaConf's ???, which an option must fill


def _structured(cls, prefix: str = "") -> tuple[dict, dict]:
    """A dataclass's fields as OmegaConf builds its structured config: (the defaults, the type of
    each field, by its dotted key under `prefix`; a nested dataclass's fields too)."""
    hints = typing.get_type_hints(cls)
    values, types = {}, {}
    for f in dataclasses.fields(cls):
        types[prefix + f.name] = hints[f.name]
        if dataclasses.is_dataclass(f.default_factory):
            values[f.name], nested = _structured(f.default_factory, f"{prefix}{f.name}.")
            types.update(nested)
        elif f.default is dataclasses.MISSING:
            values[f.name] = _MISSING
        else:
            values[f.name] = _typed(f.default, hints[f.name])
    return values, types


def _typed(value, kind):
    """`value` as OmegaConf holds it in a node of type `kind`: as it is, or an int as a float.
    Where OmegaConf would convert it otherwise (5 to '5' for a string) or refuse it, _Unusual."""
    if kind is Any:
        return value
    if typing.get_origin(kind) is Union:
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(inner) != 1:
            raise _Unusual  # OmegaConf types Optional[X] only
        return None if value is None else _typed(value, inner[0])
    if typing.get_origin(kind) is list and isinstance(value, list):
        item = (typing.get_args(kind) or (Any,))[0]
        return [_typed(v, item) for v in value]
    if kind is float and type(value) is int:
        try:
            return float(value)
        except OverflowError:  # past a double's range: OmegaConf's refusal says so
            raise _Unusual from None
    if kind in (int, float, bool, str) and type(value) is kind:
        return value
    raise _Unusual


def _yaml(path: Path) -> dict:
    """A conf/ file as OmegaConf loads it, where PyYAML's safe loader agrees with OmegaConf's."""
    import yaml

    try:
        text = path.read_text()
    except OSError:
        raise _Unusual from None  # an option that does not exist: Hydra lists those that do
    if re.search(r"^#\s*@package", text, re.M):
        raise _Unusual  # a file placed elsewhere in the config
    node = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}  # libyaml's: 10x faster
    if not isinstance(node, dict):
        raise _Unusual
    _check_plain(node)
    return node


def _check_plain(value) -> None:
    """_Unusual for what OmegaConf would read otherwise than PyYAML: an interpolation, ???, text
    that OmegaConf's loader takes for a number (1e-3), a date."""
    if isinstance(value, dict):
        for v in value.values():
            _check_plain(v)
    elif isinstance(value, list):
        for v in value:
            _check_plain(v)
    elif isinstance(value, str):
        if "${" in value or value == "???" or re.fullmatch(r"[-+]?[0-9.]+[0-9_.:eE+-]*", value):
            raise _Unusual
    elif value is not None and type(value) not in (bool, int, float):
        raise _Unusual
