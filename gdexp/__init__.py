"""gdexp: gradient-descent experiments, configured by Hydra, recorded in MLflow."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_runs", "load_curve"]


def __getattr__(name: str):
    # The analysis API imports pandas and MLflow; load it only when asked for,
    # so `import gdexp` (and every job's start-up) stays light.
    if name in ("load_runs", "load_curve"):
        from gdexp import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'gdexp' has no attribute {name!r}")
