"""gdexp's default Hydra sweeper (hydra/sweeper=gdexp): grids, every job checked first, one parent run."""
from __future__ import annotations

import logging
from typing import Any, List

from hydra.core.override_parser.overrides_parser import OverridesParser

from gdexp.hydra.grids import expand
from gdexp.hydra.internals import BasicSweeper, end_reused_joblib_workers
from gdexp.hydra.sweepers.common import (composer, data_checksums, resumed_jobs, row_of, start_folder, sweep_of,
                                         swept_keys, to_launch, validate_jobs, varied_keys)
from gdexp.tracking.parent_run import sweep_run
from gdexp.tracking.plan import job_entries

log = logging.getLogger(__name__)


class GridSweeper(BasicSweeper):
    """Hydra's basic sweeper (cartesian product of comma lists), plus:

    - `logspace(a,b,n)`, `geomspace(a,b,n)`, `linspace(a,b,n)` and a float
      `range(a,b,step)` with clean values (gdexp.hydra.grids), on the command
      line and in `params`;
    - every job composed and planned (each once) before anything runs, so a
      bad value anywhere in the grid fails at once, with no MLflow run made;
    - run names that carry every swept key, so they are unique in the sweep;
    - the sweep's parent run around the launch (gdexp.tracking.parent_run),
      closed with the table of the rows the jobs returned;
    - its plan (jobs and config hashes) in its folder, so that `gdexp resume`
      can run again, through this sweeper, only the configs without a FINISHED run.
    """

    def sweep(self, arguments: List[str]) -> Any:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        # A ConfigError here (a bad value anywhere in the grid) leaves before any run exists.
        params = [f"{k}={v}" for k, v in self.params.items()]  # hydra.sweeper.params, as BasicSweeper reads them
        lines = [expand(x) for x in [*params, *arguments]]
        self.overrides = self.split_arguments(parser.parse_overrides(lines), self.max_batch_size)
        jobs = [job for batch in self.overrides for job in batch]
        comp = composer(self)
        comp.name_keys = swept_keys(jobs, comp)
        comp.vary(varied_keys(jobs, comp))  # (plans one job per group selection)
        specs = validate_jobs(comp, jobs)
        done = resumed_jobs(jobs, specs)  # config hashes already FINISHED, when `gdexp resume` runs it
        start_folder(self.config)

        returns, rows = [], []
        planned = job_entries(jobs, [s.config_hash for s in specs])
        curves = (sum(s.curve_bytes for s in specs), len(specs), max(s.config["stopping"]["maxiter"] for s in specs))
        with sweep_run(sweep_of(self.config, comp), rows=lambda: rows, jobs=planned, data=data_checksums(specs),
                       curves=curves):
            end_reused_joblib_workers()  # they would record this sweep's jobs under the last one's parent
            initial_job_idx = 0
            while not self.is_done():
                batch = self.get_job_batch()
                for first, part in to_launch(batch, specs[initial_job_idx:initial_job_idx + len(batch)], done):
                    returns.append(self.launcher.launch(part, initial_job_idx=initial_job_idx + first))
                    rows.extend(row_of(ret, list(o)) for ret, o in zip(returns[-1], part))
                initial_job_idx += len(batch)
        return returns
