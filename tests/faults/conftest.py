"""Faults injected into real sweeps (issue 15); the store is then read through MLflow's client.

Every test module here sets ``pytestmark = pytest.mark.faults``: ``pytest -m 'not faults'``
skips them locally; CI (``.ci/run``) runs them all.
"""
from __future__ import annotations

import pytest

from fault_tools import BLOCKING_LOSS, write_module


@pytest.fixture
def blocking_loss(tmp_path):
    """The start folder holds blockloss.py (BLOCKING_LOSS); returns the overrides that use it."""
    write_module(tmp_path, "blockloss", BLOCKING_LOSS)
    return ["loss=custom", "loss._target_=blockloss.Bowl"]
