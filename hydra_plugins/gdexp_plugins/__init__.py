"""Hydra instantiates plugins only from the `hydra_plugins` namespace package.

gdexp's sweepers and launchers live in gdexp/hydra/sweepers/ and
gdexp/hydra/launchers/; the classes here are where Hydra looks for them (conf:
hydra/sweeper=gdexp, hydra/launcher=gdexp, and the named sweeps' choices). Each
imports its implementation only when Hydra builds it: Hydra imports this module
for every command (its plugin scan), and the implementations bring MLflow's and
pandas' import costs, and for Ray and submitit an extra that may be missing.
"""
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper


class _Lazy:
    """A plugin whose implementation (`_impl`, "module:Class") is imported when Hydra builds it.

    Not itself a plugin class, so Hydra's plugin listing (--info) does not show it.
    """

    _impl: str
    _extra: str | None = None  # gdexp's extra that installs what the implementation needs

    def __init__(self, **config) -> None:
        import importlib

        module, name = self._impl.split(":")
        try:
            implementation = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            if self._extra is None:
                raise
            raise ImportError(f"this launcher needs the {self._extra} extra ({exc}): "
                              f"pip install 'gdexp[{self._extra}]'") from exc
        self._plugin = implementation(**config)

    def setup(self, **kwargs) -> None:
        self._plugin.setup(**kwargs)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["_plugin"], name)


class _LazySweeper(_Lazy):
    def sweep(self, arguments):
        return self._plugin.sweep(arguments)


class _LazyLauncher(_Lazy):
    def launch(self, job_overrides, initial_job_idx):
        return self._plugin.launch(job_overrides, initial_job_idx)


class GridSweeper(_LazySweeper, Sweeper):
    """gdexp.hydra.sweepers.grid.GridSweeper (hydra/sweeper=gdexp)."""

    _impl = "gdexp.hydra.sweepers.grid:GridSweeper"


class LrFindSweeper(_LazySweeper, Sweeper):
    """gdexp.hydra.sweepers.lr_find.LrFindSweeper (hydra/sweeper=lr_find)."""

    _impl = "gdexp.hydra.sweepers.lr_find:LrFindSweeper"


class LrRangeTestSweeper(_LazySweeper, Sweeper):
    """gdexp.hydra.sweepers.lr_range_test.LrRangeTestSweeper (hydra/sweeper=lr_range_test)."""

    _impl = "gdexp.hydra.sweepers.lr_range_test:LrRangeTestSweeper"


class OptunaSweeper(_LazySweeper, Sweeper):
    """gdexp.hydra.sweepers.optuna.OptunaSweeper (hydra/sweeper=optuna)."""

    _impl = "gdexp.hydra.sweepers.optuna:OptunaSweeper"


class BatchedLauncher(_LazyLauncher, Launcher):
    """gdexp.hydra.launchers.batched.BatchedLauncher (hydra/launcher=gdexp)."""

    _impl = "gdexp.hydra.launchers.batched:BatchedLauncher"


class RayLauncher(_LazyLauncher, Launcher):
    """gdexp.hydra.launchers.ray.RayLauncher (hydra/launcher=ray)."""

    _impl, _extra = "gdexp.hydra.launchers.ray:RayLauncher", "ray"


class SubmititLocalLauncher(_LazyLauncher, Launcher):
    """gdexp.hydra.launchers.submitit.SubmititLocalLauncher (hydra/launcher=submitit_local)."""

    _impl, _extra = "gdexp.hydra.launchers.submitit:SubmititLocalLauncher", "slurm"


class SubmititSlurmLauncher(_LazyLauncher, Launcher):
    """gdexp.hydra.launchers.submitit.SubmititSlurmLauncher (hydra/launcher=submitit_slurm)."""

    _impl, _extra = "gdexp.hydra.launchers.submitit:SubmititSlurmLauncher", "slurm"
