"""gdexp: gradient-descent experiments, configured by Hydra, recorded in MLflow.

The Python API (the same runs, recorded exactly as the `gdexp` command records them):

- ``gdexp.run(overrides)``: one run; returns its summary row (status, losses, run id, params).
- ``gdexp.sweep(overrides)``: a sweep (``-m`` implied); returns its typed table, as load_runs.
- ``gdexp.load_runs(...)``, ``gdexp.load_curve(run_id)``: runs and curves read back from MLflow.
- ``gdexp.ConfigError``: what bad input raises (one line: ``KEY=VALUE: reason``).

Layers (imports only go down): gdexp.core (numpy) < gdexp.specs (configs to runs) < gdexp.results (pandas tables)
< gdexp.tracking (MLflow) < gdexp.hydra (configs, sweepers, launchers) < gdexp.report
< gdexp.commands (the CLI) and this API.
"""

__version__ = "0.2.0"

__all__ = ["__version__", "ConfigError", "run", "sweep", "load_runs", "load_curve"]

# Where each public name lives; imported on first use, so `import gdexp` (and every job's
# start-up) stays light: MLflow, pandas and Hydra cost seconds to import.
_LAZY = {
    "ConfigError": "gdexp.core.errors",
    "run": "gdexp.commands.api",
    "sweep": "gdexp.commands.api",
    "load_runs": "gdexp.tracking.reader",
    "load_curve": "gdexp.tracking.reader",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gdexp' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
