"""Hydra instantiates plugins only from the `hydra_plugins` namespace package.

gdexp's sweeper and launcher live in gdexp/; these subclasses are where Hydra
looks for them (conf: hydra/sweeper=gdexp, hydra/launcher=gdexp).
"""
from hydra.plugins.launcher import Launcher

import gdexp.launcher as _launcher
import gdexp.lrfind as _lrfind
import gdexp.optuna_sweeper as _optuna_sweeper
import gdexp.sweeper as _sweeper


class GridSweeper(_sweeper.GridSweeper):
    """gdexp.sweeper.GridSweeper, registered where Hydra finds plugins."""


class BatchedLauncher(_launcher.BatchedLauncher):
    """gdexp.launcher.BatchedLauncher, registered where Hydra finds plugins."""


class LrFindSweeper(_lrfind.LrFindSweeper):
    """gdexp.lrfind.LrFindSweeper, registered where Hydra finds plugins."""


class OptunaSweeper(_optuna_sweeper.OptunaSweeper):
    """gdexp.optuna_sweeper.OptunaSweeper, registered where Hydra finds plugins."""


class RayLauncher(Launcher):
    """gdexp.ray_launcher.RayLauncher (hydra/launcher=ray), imported only when used:
    without the `ray` extra, Hydra's scan of this package must still succeed."""

    def __init__(self, **config) -> None:
        from gdexp.ray_launcher import RayLauncher as _RayLauncher

        self._launcher = _RayLauncher(**config)

    def setup(self, **kwargs) -> None:
        self._launcher.setup(**kwargs)

    def launch(self, job_overrides, initial_job_idx):
        return self._launcher.launch(job_overrides, initial_job_idx)
