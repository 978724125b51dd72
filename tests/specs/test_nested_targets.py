"""A nested `_target_` (or another of Hydra's instantiate keys) in a section's keywords is refused in
one line naming the key, before any run or import of the code it names."""
from __future__ import annotations

import sys

import pytest
from cli_runner import runs_of

LOSS = """
import numpy as np
from gdexp.core.losses.base import Loss
from dataclasses import dataclass

IMPORTED = []

def make_scale(k):
    IMPORTED.append(k)
    return k

@dataclass(frozen=True)
class Bowl(Loss):
    scale: object = 1.0
    name = "bowl"

    @property
    def dim(self):
        return 2

    def value_and_grad(self, x, rows=None):
        return 0.5 * float(self.scale) * (x ** 2).sum(axis=1), float(self.scale) * x

    def default_init(self):
        return np.ones(2)
"""


@pytest.mark.parametrize("arg, key", [
    ("+loss.scale={_target_:nestedpkg.make_scale,k:3}", "loss.scale._target_='nestedpkg.make_scale'"),
    ("+loss.scale={inner:{_target_:nestedpkg.make_scale}}", "loss.scale.inner._target_='nestedpkg.make_scale'"),
    ("+loss._partial_=true", "loss._partial_=True"),
    ("+loss._convert_=all", "loss._convert_='all'"),
])
def test_a_nested_target_is_refused_in_one_line(gdexp, store, tmp_path, arg, key):
    (tmp_path / "nestedpkg.py").write_text(LOSS)
    sys.modules.pop("nestedpkg", None)
    code, out, err = gdexp("loss=custom", "loss._target_=nestedpkg.Bowl", arg, "stopping.maxiter=5")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"gdexp: error: {key}: ")
    assert "not instantiated" in lines[0] or "instantiate option" in lines[0]
    assert runs_of(store)[0].search_runs([e.experiment_id for e in runs_of(store)[0].search_experiments()]) == []
    assert "nestedpkg" not in sys.modules or sys.modules["nestedpkg"].IMPORTED == []  # make_scale never called


def test_the_same_loss_with_plain_keywords_runs(gdexp, store, tmp_path):
    (tmp_path / "nestedpkg.py").write_text(LOSS)
    sys.modules.pop("nestedpkg", None)
    code, _, err = gdexp("loss=custom", "loss._target_=nestedpkg.Bowl", "+loss.scale=3", "stopping.maxiter=5")
    assert code == 0, err
