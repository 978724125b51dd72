"""gdexp's default Hydra sweeper: grids, validation of every job first, one parent run."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, List

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from gdexp.compose import shared_composer
from gdexp.core.errors import ConfigError
from gdexp.grids import expand
from gdexp.plan import plan
from gdexp.sweeprun import sweep_run

log = logging.getLogger(__name__)


class GridSweeper(BasicSweeper):
    """Hydra's basic sweeper (cartesian product of comma lists), plus:

    - `logspace(a,b,n)`, `linspace(a,b,n)` and a float `range(a,b,step)` with
      clean values (gdexp.grids), on the command line and in `params`;
    - every job composed and checked (gdexp.plan) before anything runs, so a
      bad value anywhere in the grid fails at once, with no MLflow run made;
    - the sweep's parent run around the launch (gdexp.sweeprun).
    """

    def sweep(self, arguments: List[str]) -> Any:
        lines = [expand(x) for x in [*self._parse_config(), *arguments]]
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(lines), self.max_batch_size)
        try:
            validate_jobs(self.hydra_context.config_loader, self.config,
                          [job for batch in self.overrides for job in batch])
        except ConfigError as exc:
            sys.exit(f"gdexp: error: {exc}")  # one line, exit 1, no run created
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        returns = []
        failed = lambda: sum(r.status == JobStatus.FAILED for batch in returns for r in batch)  # noqa: E731
        with sweep_run(self.config, sweep_name(self.config), job_failures=failed):
            initial_job_idx = 0
            while not self.is_done():
                batch = self.get_job_batch()
                returns.append(self.launcher.launch(batch, initial_job_idx=initial_job_idx))
                initial_job_idx += len(batch)
        return returns


def validate_jobs(config_loader, master_config, jobs) -> None:
    """Compose and plan every job; the first bad one raises, naming its overrides."""
    composer = shared_composer(config_loader, master_config)
    for num, overrides in enumerate(jobs):
        try:
            plan(composer.task_config(list(overrides)))
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.value, f"{exc.reason} (job #{num}: {' '.join(overrides)})") from None


def sweep_name(config) -> str:
    """The named sweep's name (`+sweep=NAME`), else 'multirun'."""
    return config.hydra.runtime.choices.get("sweep") or "multirun"
