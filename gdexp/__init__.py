"""gdexp: gradient-descent experiments, configured by Hydra, recorded in MLflow."""

__version__ = "0.1.0"

__all__ = ["__version__"]
