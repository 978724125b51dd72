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


class _Lazy(Launcher):
    """A gdexp launcher over an optional plugin (Ray, submitit), imported only when used:
    without the extra, Hydra's scan of this package must still succeed."""

    _impl: str   # module:class
    _extra: str  # gdexp's extra that installs the plugin

    def __init__(self, **config) -> None:
        import importlib

        module, name = self._impl.split(":")
        try:
            implementation = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise ImportError(f"{exc}; install it with: pip install 'gdexp[{self._extra}]'") from exc
        self._launcher = implementation(**config)

    def setup(self, **kwargs) -> None:
        self._launcher.setup(**kwargs)

    def launch(self, job_overrides, initial_job_idx):
        return self._launcher.launch(job_overrides, initial_job_idx)


class RayLauncher(_Lazy):
    """gdexp.ray_launcher.RayLauncher (hydra/launcher=ray)."""

    _impl, _extra = "gdexp.ray_launcher:RayLauncher", "ray"


class SubmititLocalLauncher(_Lazy):
    """gdexp.submitit_launcher.SubmititLocalLauncher (hydra/launcher=submitit_local)."""

    _impl, _extra = "gdexp.submitit_launcher:SubmititLocalLauncher", "slurm"


class SubmititSlurmLauncher(_Lazy):
    """gdexp.submitit_launcher.SubmititSlurmLauncher (hydra/launcher=submitit_slurm)."""

    _impl, _extra = "gdexp.submitit_launcher:SubmititSlurmLauncher", "slurm"
