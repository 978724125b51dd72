"""Hydra instantiates plugins only from the `hydra_plugins` namespace package.

gdexp's sweeper and launcher live in gdexp/; these subclasses are where Hydra
looks for them (conf: hydra/sweeper=gdexp, hydra/launcher=gdexp).
"""
import gdexp.launcher as _launcher
import gdexp.sweeper as _sweeper


class GridSweeper(_sweeper.GridSweeper):
    """gdexp.sweeper.GridSweeper, registered where Hydra finds plugins."""


class BatchedLauncher(_launcher.BatchedLauncher):
    """gdexp.launcher.BatchedLauncher, registered where Hydra finds plugins."""
