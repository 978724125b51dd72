"""The numpy core: losses, optimizers, schedules, the descent loop and its result.

Nothing here imports Hydra, OmegaConf or MLflow (tests/test_architecture.py holds the
line): a loss, an optimizer and a start point go in, a `Result` per run comes
out. The tracking layer (gdexp.tracking) records results, the Hydra layer
(gdexp.hydra) turns configs into them.
"""
