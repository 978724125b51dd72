"""A sweep's runs as tables (pandas): grouping by swept keys, aggregates over seeds, best and
largest stable learning rates. Read by the CLI summary, the report and the Python API; knows
nothing of MLflow or Hydra (gdexp.tracking.reader builds the tables it works on)."""
