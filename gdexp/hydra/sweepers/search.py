"""What a sweeper that picks each job from the results so far needs around its jobs.

lr_find (sweepers/lr_find.py) and the Optuna sweeper (sweepers/optuna.py) are
SearchSweepers: like the grid sweeper, every job is a child of one parent run
with the usual summary table and counts, and bad input fails before any run
exists. Subclasses say which jobs to validate first (`_prepare`) and run the
search (`_search`), launching through `_launch`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.plugins.sweeper import Sweeper

from gdexp.hydra.internals import end_reused_joblib_workers
from gdexp.hydra.sweepers.common import (composer, data_checksums, row_of, start_folder, sweep_of,
                                         validate_jobs)
from gdexp.tracking.parent_run import annotate, mark_failed, sweep_run
from gdexp.tracking.errors import SearchFailed
from gdexp.tracking.store import resolve_uri

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a search ends with: results for the parent run, lines to print, an error if no answer."""

    metrics: Dict[str, float]
    params: Dict[str, Any] = field(default_factory=dict)
    tags: Dict[str, str] = field(default_factory=dict)
    report: List[str] = field(default_factory=list)
    error: Optional[str] = None


class SearchSweeper(Sweeper):
    """A sweeper whose next jobs depend on the results so far.

    Not a BasicSweeper subclass: Hydra's first plugin scan re-executes
    hydra._internal.core_plugins, and a subclass made before it then fails in
    BasicSweeper's __init__.

    Attributes:
        rows: the summary rows of the jobs launched so far (gdexp.tracking.content.run_row).
        searched: the keys the search varies (put into run names besides the lr).
    """

    searched: tuple[str, ...] = ()

    def __init__(self, params: Optional[Dict[str, str]] = None) -> None:
        self.params = dict(params or {})
        self.hydra_context = self.config = self.launcher = None
        self.rows: list[dict] = []

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> List[dict]:
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        # A ConfigError here leaves before any run exists.
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        fixed, examples = self._prepare(parser.parse_overrides(lines))
        comp = composer(self)
        comp.name_keys = tuple(k for k in self.searched if k != "optimizer.lr")
        comp.vary(tuple(self.searched))
        specs = validate_jobs(comp, examples)
        start_folder(self.config)
        # Its plan holds no jobs (they depend on the results), only the data they must be fitted on.
        sweep = sweep_of(self.config, comp)
        with sweep_run(sweep, rows=lambda: self.rows, data=data_checksums(specs)) as parent_id:
            end_reused_joblib_workers()  # they would record this search's jobs under the last one's parent
            outcome = self._search(fixed)
            self._log_results(parent_id, outcome.metrics, outcome.params, outcome.tags)
        log.info("\n".join(outcome.report))
        if outcome.error:
            # The parent was closed with the summary of its runs; the search itself found no answer.
            mark_failed(self._uri(), parent_id)
            raise SearchFailed(f"gdexp: {sweep.name}: {outcome.error}")
        return self.rows

    def _prepare(self, overrides: List[Override]) -> tuple[List[str], List[List[str]]]:
        """(overrides every job gets, example jobs to validate); ConfigError for bad input."""
        raise NotImplementedError

    def _search(self, fixed: List[str]) -> Outcome:
        raise NotImplementedError

    def _launch(self, jobs: List[List[str]]) -> List[dict]:
        """Launch one batch; each job's row (status 'failed' if it raised outside gdexp's recording)."""
        returns = self.launcher.launch(jobs, initial_job_idx=len(self.rows))
        out = [row_of(ret, job) for ret, job in zip(returns, jobs)]
        self.rows.extend(out)
        return out

    def _log_results(self, run_id: str, metrics: Dict[str, float], params: Dict[str, Any] | None = None,
                     tags: Dict[str, str] | None = None) -> None:
        """Results on a run of the sweep (the parent, or a child already closed)."""
        annotate(self._uri(), run_id, metrics, params, tags)

    def _uri(self) -> str:
        # The store sweep_run opened the parent in.
        return resolve_uri(self.config.tracking.uri)


def fixed_line(o: Override) -> str | None:
    """`key=value` for a plain value or a sweep of exactly one value (gdexp's command line turns
    values of group keys into `choice(v)`, so each job checks them against its own option);
    None for a real sweep."""
    if not o.is_sweep_override():
        return o.input_line
    try:
        values = list(o.sweep_string_iterator())
    except Exception:
        return None
    prefix = o.input_line.split("=", 1)[0]
    return f"{prefix}={values[0]}" if len(values) == 1 else None
