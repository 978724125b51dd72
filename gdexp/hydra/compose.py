"""Job configs of a sweep without paying Hydra's full compose (~30-60 ms) per job.

Jobs that select the same config groups differ only in values. Each distinct
selection is composed once by Hydra; a job's values are then applied to a copy
of that template with Hydra's own override logic, so types are checked by the
structured schema exactly as in a full compose (tests compare the two).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from omegaconf import DictConfig, OmegaConf, open_dict

from gdexp.core.errors import ConfigError
from gdexp.specs.run_spec import RunSpec
from gdexp.hydra.internals import apply_overrides, get_overrides_dirname
from gdexp.hydra.schema import job_refusal, job_spec
from gdexp.hydra.task import to_config


@dataclass(frozen=True)
class Job:
    """One job of a sweep: its number, overrides and configs as plain containers."""

    num: int
    overrides: list[str]
    config: dict   # the resolved task config (no hydra node)
    hydra: dict    # the job's hydra node, unresolved, as Hydra saves it to .hydra/hydra.yaml


class JobComposer:
    """Composes and plans the jobs of one sweep, each once; templates are cached per group selection.

    Attributes:
        name_keys: the dotted keys the sweep varies (besides the learning rate),
            put into run names so that names are unique within the sweep.
    """

    def __init__(self, config_loader, master_config: DictConfig):
        self._loader = config_loader
        self._master = master_config
        self._parser = OverridesParser.create(config_loader=config_loader)
        self._templates: dict[tuple[str, ...], DictConfig] = {}
        self._configs: dict[tuple[str, ...], dict] = {}
        self._specs: dict[tuple[str, ...], RunSpec] = {}
        self._hydra_nodes: dict[tuple[str, ...], dict] = {}
        self._tasks: dict[tuple[str, ...], DictConfig] = {}
        self._reads_hydra: dict[tuple[str, ...], bool] = {}
        self._resolved: dict[tuple[str, ...], dict] = {}
        self._interpolates: dict[tuple[str, ...], bool] = {}
        self.name_keys: tuple[str, ...] = ()
        self.varied: tuple[str, ...] = ()  # the keys whose values differ between the jobs (RunSpec.varied)
        self._parsed: dict[str, Override] = {}
        self._floats: dict[str, tuple[Override | None, bool]] = {}  # key text -> (a parsed float line, checked)
        self._values: dict[str, bool] = {}

    def task_config(self, overrides: list[str], num: int = 0) -> dict:
        """The resolved task config of a job (gdexp.hydra.task.to_config), memoized.

        A config that reads Hydra's own values (``${hydra:job.name}``,
        ``${hydra:job.num}``, ...) is resolved with the job's Hydra config, as
        Hydra's launchers resolve it; only such configs are memoized per job number.
        """
        parsed = self._parse(overrides)
        structural = tuple(o.input_line for o in parsed if not self._is_value(o))
        values = [o for o in parsed if self._is_value(o)]
        cfg = self._task_template(structural)
        per_job = self._reads_hydra[structural] or any(_HYDRA_INTERPOLATION.search(str(o.value())) for o in values)
        key = (num, *overrides) if per_job else tuple(overrides)
        if key not in self._configs:
            plain = None if per_job else self._plain_values(structural, values)
            if plain is not None:
                self._configs[key] = plain
            elif per_job:
                cfg = copy.deepcopy(cfg)
                apply_overrides(values, cfg)
                with job_hydra_config(self._hydra_node(num, overrides, parsed)):
                    self._configs[key] = to_config(cfg)
            else:
                cfg = copy.deepcopy(cfg)
                apply_overrides(values, cfg)
                self._configs[key] = to_config(cfg)
        return self._configs[key]

    def _plain_values(self, structural: tuple[str, ...], values: list[Override]) -> dict | None:
        """The job's config from the template's resolved dict and its values, without OmegaConf
        (a deepcopy and an apply_overrides cost ~5 ms a job: more than its descent); None
        where Hydra must apply them (a new or deleted key, an interpolation, a dict value).
        The values are checked when the job is planned (gdexp.hydra.schema.job_spec), as
        OmegaConf's schema would: tests compare both ways."""
        self._task_template(structural)
        if self._interpolates[structural]:
            return None  # a value may feed other keys through ${...}: OmegaConf resolves them
        if structural not in self._resolved:
            self._resolved[structural] = to_config(self._task_template(structural))
        config = copy.deepcopy(self._resolved[structural])
        for o in values:
            value = o.value()
            if o.type != OverrideType.CHANGE or isinstance(value, dict) or _interpolates(value):
                return None
            *path, last = o.key_or_group.split(".")
            node = config
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or last not in node or isinstance(node[last], dict):
                return None  # Hydra says what is wrong with it
            node[last] = value
        return config

    def spec(self, overrides: list[str], num: int = 0) -> RunSpec:
        """The job's planned run (gdexp.hydra.schema.job_spec), once per process.

        Raises:
            ConfigError: naming the key, the value and the job.
        """
        key = (num, *overrides)
        if key not in self._specs:
            try:
                self._specs[key] = job_spec(self.task_config(overrides, num), self.name_keys, self.varied,
                                            self._choices(overrides))
            except ConfigError as exc:
                raise job_refusal(exc, num, overrides) from None
        return self._specs[key]

    def vary(self, keys: tuple[str, ...]) -> None:
        """Set the keys that differ between the sweep's jobs, also on the runs planned already."""
        self.varied = tuple(keys)
        self._specs = {k: dataclasses.replace(s, varied=self.varied) for k, s in self._specs.items()}

    def _choices(self, overrides: list[str]) -> dict[str, str]:
        """The group options a job's overrides choose (``optimizer=heavy``): its run's name."""
        return {o.key_or_group: str(o.value()) for o in self._parse(overrides)
                if not self._is_value(o) and "." not in o.key_or_group and isinstance(o.value(), str)}

    def job(self, num: int, overrides: list[str]) -> Job:
        """A job with its hydra node set as Hydra sets it for job `num`."""
        parsed = self._parse(overrides)
        return Job(num, list(overrides), self.task_config(overrides, num), self._hydra_node(num, overrides, parsed))

    def _parse(self, overrides: list[str]) -> list[Override]:
        """Hydra's parsed overrides, each line parsed once per sweep: its grammar costs ~1 ms a
        line, and a sweep's jobs share all their lines but the swept values.

        A swept value that is a plain decimal float (``optimizer.lr=0.000125892541179``, every
        job of a logspace sweep) is not parsed again: its Override is the one parsed for an
        earlier line with the same key, with this float (what Hydra's grammar gives such a
        literal: one FLOAT token, ``float(text)``). The first such line per key is also parsed
        by Hydra and compared; a difference turns this off for the key."""
        for line in overrides:
            if line not in self._parsed:
                parsed = self._like_sibling(line)
                if parsed is None:
                    (parsed,) = self._parser.parse_overrides([line])
                    self._remember_float(line, parsed)
                self._parsed[line] = parsed
        return [self._parsed[line] for line in overrides]

    def _remember_float(self, line: str, parsed: Override) -> None:
        key, _, value = line.partition("=")
        if (key not in self._floats and _FLOAT_LITERAL.fullmatch(value) and parsed.type == OverrideType.CHANGE
                and parsed.value_type == ValueType.ELEMENT and type(parsed.value()) is float):
            self._floats[key] = (parsed, False)  # not yet checked

    def _like_sibling(self, line: str) -> Override | None:
        key, _, value = line.partition("=")
        sibling, checked = self._floats.get(key, (None, False))
        if sibling is None or not _FLOAT_LITERAL.fullmatch(value):
            return None
        made = dataclasses.replace(sibling, _value=float(value), input_line=line)
        if not checked:
            (parsed,) = self._parser.parse_overrides([line])
            self._floats[key] = (sibling, True) if parsed == made else (None, True)
            return parsed
        return made

    def _hydra_node(self, num: int, overrides: list[str], parsed: list[Override]) -> dict:
        structural = tuple(o.input_line for o in parsed if not self._is_value(o))
        # A copy of the sections this sets (job, runtime, overrides); the rest is the template's,
        # shared by the sweep's jobs, which only read it: a deep copy costs ~0.3 ms a job.
        template = self._hydra_container(structural)
        hydra = {**template, **{k: dict(template[k]) for k in ("job", "runtime", "overrides")}}
        task = [o for o in parsed if not o.is_hydra_override()]
        dirname_conf = hydra["job"]["config"]["override_dirname"]
        hydra["job"]["override_dirname"] = get_overrides_dirname(
            overrides=task, kv_sep=dirname_conf["kv_sep"], item_sep=dirname_conf["item_sep"],
            exclude_keys=list(dirname_conf["exclude_keys"]))
        hydra["overrides"]["task"] = [o.input_line for o in task]
        hydra["job"]["id"] = str(num)  # typed str in Hydra's schema
        hydra["job"]["num"] = num
        if hydra["sweep"]["subdir"] == "${hydra.job.num}":  # else the launcher resolves it
            hydra["runtime"]["output_dir"] = os.path.abspath(os.path.join(str(self._master.hydra.sweep.dir), str(num)))
        return hydra

    def full_config(self, num: int, overrides: list[str]) -> DictConfig:
        """What Hydra's own launchers build for a job (the slow, reference path)."""
        cfg = self._loader.load_sweep_config(self._master, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = num
            cfg.hydra.job.num = num
        return cfg

    def _task_template(self, structural: tuple[str, ...]) -> DictConfig:
        # The template without its hydra node, as run_job hands it to the task:
        # cheaper to copy, and value overrides never touch Hydra's own keys.
        if structural not in self._tasks:
            task = copy.deepcopy(self._template(structural))
            with open_dict(task):
                del task["hydra"]
            self._tasks[structural] = task
            text = OmegaConf.to_yaml(task, resolve=False)
            self._reads_hydra[structural] = bool(_HYDRA_INTERPOLATION.search(text))
            self._interpolates[structural] = "${" in text
        return self._tasks[structural]

    def _hydra_container(self, structural: tuple[str, ...]) -> dict:
        if structural not in self._hydra_nodes:
            node = OmegaConf.to_container(self._template(structural).hydra, resolve=False, enum_to_str=True)
            self._hydra_nodes[structural] = node
        return self._hydra_nodes[structural]

    def _template(self, structural: tuple[str, ...]) -> DictConfig:
        if structural not in self._templates:
            self._templates[structural] = self._loader.load_sweep_config(self._master, list(structural))
        return self._templates[structural]

    def _is_value(self, o: Override) -> bool:
        # A plain `key=value` on a key that is not a config group and not Hydra's (once per line).
        if o.input_line not in self._values:
            self._values[o.input_line] = (
                o.type == OverrideType.CHANGE and o.package is None and not o.is_hydra_override()
                and not o.is_sweep_override() and not self._loader.repository.group_exists(o.key_or_group))
        return self._values[o.input_line]

    def changed(self, overrides: list[str]) -> tuple[tuple[str, ...], ...]:
        """The key paths of a job's config that its value overrides set."""
        return tuple(tuple(o.key_or_group.split(".")) for o in self._parse(overrides) if self._is_value(o))

    def selection(self, overrides: list[str]) -> tuple[str, ...]:
        """A job's group choices and other structural overrides (its template's key)."""
        return tuple(o.input_line for o in self._parse(overrides) if not self._is_value(o))

    def interpolates(self, overrides: list[str]) -> bool:
        """Whether the job's config template holds interpolations (a value may feed other keys)."""
        selection = self.selection(overrides)
        self._task_template(selection)
        return self._interpolates[selection]

    def parse(self, overrides: list[str]) -> list[Override]:
        """The overrides parsed by Hydra (each distinct line once per sweep)."""
        return self._parse(overrides)


def shared_composer(launcher, config_loader, master_config: DictConfig) -> JobComposer:
    """The composer of the sweep `launcher` runs, made once and kept on the launcher instance;
    the sweeper reaches it through its launcher (Hydra gives each sweep one of each).

    A new sweep also sets Hydra's global HydraConfig to its master config: Hydra
    sets it only inside each job, but gdexp's sweepers read the master's task
    keys (tracking.uri, tracking.experiment), and a ``${hydra:...}`` there would
    fail with "HydraConfig was not set". Each job sets its own as it runs.
    """
    from hydra.core.hydra_config import HydraConfig

    # Not HydraConfig.set_config(master_config): it makes the master's hydra node read-only,
    # and the Ray and submitit launchers still write to it (the sweep folder made absolute).
    # Hydra holds gdexp's launcher behind a lazy wrapper (hydra_plugins.gdexp_plugins): the sweeper
    # sees the wrapper, the launcher's own code sees itself; keep the composer on the launcher itself.
    launcher = vars(launcher).get("_plugin", launcher)
    composer = getattr(launcher, "gdexp_composer", None)
    if composer is None or composer._master is not master_config:
        composer = JobComposer(config_loader, master_config)
        HydraConfig.instance().cfg = _hydra_only(OmegaConf.to_container(master_config.hydra, resolve=False))
        launcher.gdexp_composer = composer
    return composer


@contextmanager
def job_hydra_config(hydra: dict):
    """Hydra's global HydraConfig set to one job's hydra node (for ``${hydra:...}``), then restored."""
    from hydra.core.hydra_config import HydraConfig

    instance = HydraConfig.instance()
    saved = instance.cfg
    instance.cfg = _hydra_only(hydra)
    try:
        yield
    finally:
        instance.cfg = saved


def _interpolates(value) -> bool:
    """Whether a parsed override value holds an interpolation (${...}) anywhere."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, (list, tuple)):
        return any(_interpolates(v) for v in value)
    return False


def _hydra_only(hydra: dict) -> DictConfig:
    """What HydraConfig holds for `${hydra:...}`: a read-only {"hydra": node} of plain containers.
    Not set_config(), which asserts a node typed HydraConf: the `hydra:` resolver only reads
    (OmegaConf.select on HydraConfig.get())."""
    node = OmegaConf.create({"hydra": hydra})
    OmegaConf.set_readonly(node, True)
    return node


# A decimal float literal that Hydra's override grammar reads as one FLOAT token (a subset of
# its FLOAT rule: no underscores, inf or nan, leading '.' or trailing '.'), never an int.
_FLOAT_LITERAL = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)")

# ${hydra:...}, also as a sweeper hands a job its value: escaped, `$\{hydra\:job.name\}`, and
# parsed back by Override.value() before this sees it.
_HYDRA_INTERPOLATION = re.compile(r"\$\{\s*hydra\s*:")
