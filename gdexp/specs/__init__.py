"""From a resolved config to validated runs: the layer between the numerics and the records.

The registry (a config's ``_target_`` names its implementation), importing and
trusting the user's code (targets, the JAX user loss), the ``RunSpec`` a run is
descended and recorded from (with its config hash), runs batched and chunked
for the vectorized descent, and the renames of older configs. It knows numpy
and the core (gdexp.core), never Hydra, OmegaConf or MLflow
(tests/test_architecture.py holds the line): the Hydra layer hands it plain
dicts, the tracking layer records what it plans.
"""
