"""Where the shipped configs live, in a source checkout and in an installed wheel."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # the gdexp package


def _shipped(name: str) -> Path:
    # A wheel carries conf/ and sweeps/ inside the package (pyproject's
    # force-include); a source checkout or editable install keeps them at the
    # repo's top level, beside the package.
    inside = _PACKAGE / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


def conf_dir() -> Path:
    """The Hydra config folder (conf/)."""
    return _shipped("conf")


def sweeps_dir() -> Path:
    """The named-sweep folder (sweeps/)."""
    return _shipped("sweeps")
