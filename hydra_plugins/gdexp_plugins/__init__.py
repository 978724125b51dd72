"""Hydra instantiates plugins only from the `hydra_plugins` namespace package.

gdexp's sweepers and launchers live in gdexp/hydra/sweepers/ and
gdexp/hydra/launchers/; these subclasses are where Hydra looks for them
(conf: hydra/sweeper=gdexp, hydra/launcher=gdexp, and the named sweeps' choices).
"""
from hydra.plugins.launcher import Launcher

from gdexp.hydra.launchers import batched as _batched
from gdexp.hydra.sweepers import grid as _grid
from gdexp.hydra.sweepers import lr_find as _lr_find
from gdexp.hydra.sweepers import optuna as _optuna


class GridSweeper(_grid.GridSweeper):
    """gdexp.hydra.sweepers.grid.GridSweeper (hydra/sweeper=gdexp)."""


class BatchedLauncher(_batched.BatchedLauncher):
    """gdexp.hydra.launchers.batched.BatchedLauncher (hydra/launcher=gdexp)."""


class LrFindSweeper(_lr_find.LrFindSweeper):
    """gdexp.hydra.sweepers.lr_find.LrFindSweeper (hydra/sweeper=lr_find)."""


class OptunaSweeper(_optuna.OptunaSweeper):
    """gdexp.hydra.sweepers.optuna.OptunaSweeper (hydra/sweeper=optuna)."""


class _LazyLauncher:
    """A gdexp launcher over an optional plugin (Ray, submitit), imported only when used:
    without the extra, Hydra's scan of this package must still succeed. Not itself a
    Launcher, so Hydra's plugin listing (--info) does not show it."""

    _impl: str   # module:class
    _extra: str  # gdexp's extra that installs the plugin

    def __init__(self, **config) -> None:
        import importlib

        module, name = self._impl.split(":")
        try:
            implementation = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise ImportError(f"hydra/launcher needs the {self._extra} extra ({exc}): "
                              f"pip install 'gdexp[{self._extra}]'") from exc
        self._launcher = implementation(**config)

    def setup(self, **kwargs) -> None:
        self._launcher.setup(**kwargs)

    def launch(self, job_overrides, initial_job_idx):
        return self._launcher.launch(job_overrides, initial_job_idx)


class RayLauncher(_LazyLauncher, Launcher):
    """gdexp.hydra.launchers.ray.RayLauncher (hydra/launcher=ray)."""

    _impl, _extra = "gdexp.hydra.launchers.ray:RayLauncher", "ray"


class SubmititLocalLauncher(_LazyLauncher, Launcher):
    """gdexp.hydra.launchers.submitit.SubmititLocalLauncher (hydra/launcher=submitit_local)."""

    _impl, _extra = "gdexp.hydra.launchers.submitit:SubmititLocalLauncher", "slurm"


class SubmititSlurmLauncher(_LazyLauncher, Launcher):
    """gdexp.hydra.launchers.submitit.SubmititSlurmLauncher (hydra/launcher=submitit_slurm)."""

    _impl, _extra = "gdexp.hydra.launchers.submitit:SubmititSlurmLauncher", "slurm"
