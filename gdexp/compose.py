"""Job configs of a sweep without paying Hydra's full compose (~30-60 ms) per job.

Jobs that select the same config groups differ only in values. Each distinct
selection is composed once by Hydra; a job's values are then applied to a copy
of that template with Hydra's own override logic, so types are checked by the
structured schema exactly as in a full compose (tests compare the two).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict


@dataclass(frozen=True)
class Job:
    """One job of a sweep: its number, overrides and configs as plain containers."""

    num: int
    overrides: list[str]
    config: dict   # the resolved task config (no hydra node)
    hydra: dict    # the job's hydra node, unresolved, as Hydra saves it to .hydra/hydra.yaml


class JobComposer:
    """Composes the jobs of one sweep; templates are cached per group selection."""

    def __init__(self, config_loader, master_config: DictConfig):
        self._loader = config_loader
        self._master = master_config
        self._parser = OverridesParser.create(config_loader=config_loader)
        self._templates: dict[tuple[str, ...], DictConfig] = {}
        self._jobs: dict[tuple[str, ...], dict] = {}
        self._hydra_nodes: dict[tuple[str, ...], dict] = {}
        self._tasks: dict[tuple[str, ...], DictConfig] = {}

    def task_config(self, overrides: list[str]) -> dict:
        """The resolved task config of a job with these overrides (memoized)."""
        key = tuple(overrides)
        if key not in self._jobs:
            parsed = self._parser.parse_overrides(list(overrides))
            structural = tuple(o.input_line for o in parsed if not self._is_value(o))
            values = [o for o in parsed if self._is_value(o)]
            cfg = copy.deepcopy(self._task_template(structural))
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
            self._jobs[key] = OmegaConf.to_container(cfg, resolve=True)
        return self._jobs[key]

    def job(self, num: int, overrides: list[str]) -> Job:
        """A job with its hydra node set as Hydra sets it for job `num`."""
        parsed = self._parser.parse_overrides(list(overrides))
        structural = tuple(o.input_line for o in parsed if not self._is_value(o))
        hydra = copy.deepcopy(self._hydra_container(structural))
        task = [o for o in parsed if not o.is_hydra_override()]
        dirname_conf = hydra["job"]["config"]["override_dirname"]
        hydra["job"]["override_dirname"] = get_overrides_dirname(
            overrides=task, kv_sep=dirname_conf["kv_sep"], item_sep=dirname_conf["item_sep"],
            exclude_keys=list(dirname_conf["exclude_keys"]))
        hydra["overrides"]["task"] = [o.input_line for o in task]
        hydra["job"]["id"] = str(num)  # typed str in Hydra's schema
        hydra["job"]["num"] = num
        return Job(num, list(overrides), self.task_config(overrides), hydra)

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
        # A plain `key=value` on a key that is not a config group and not Hydra's.
        return (o.type == OverrideType.CHANGE and o.package is None and not o.is_hydra_override()
                and not o.is_sweep_override()
                and not self._loader.repository.group_exists(o.key_or_group))


_SHARED: dict[int, JobComposer] = {}


def shared_composer(config_loader, master_config: DictConfig) -> JobComposer:
    """The composer of the running sweep, shared by its sweeper and launcher."""
    key = id(master_config)
    if key not in _SHARED:
        _SHARED.clear()  # one sweep at a time per process
        _SHARED[key] = JobComposer(config_loader, master_config)
    return _SHARED[key]
