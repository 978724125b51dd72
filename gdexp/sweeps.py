"""Named sweeps: every file in sweeps/ is selectable as `gdexp +sweep=NAME`."""
from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from gdexp.paths import sweeps_dir


def available() -> list[str]:
    return sorted(p.stem for p in sweeps_dir().glob("*.yaml"))


def register_sweeps() -> None:
    """Store each sweep file in the ConfigStore group `sweep`, package _global_.

    The ConfigStore, not a search path, so `+sweep=NAME` resolves the same from
    any working folder and from an installed wheel, and an unknown name fails
    with Hydra's list of the sweeps that exist instead of quietly becoming a
    string value.
    """
    cs = ConfigStore.instance()
    for name in available():
        node = OmegaConf.load(sweeps_dir() / f"{name}.yaml")
        cs.store(group="sweep", name=name, node=node, package="_global_")


def describe() -> list[tuple[str, str]]:
    """(name, first header line) for each sweep: the one-line listings in --help."""
    out = []
    for name in available():
        lines = (sweeps_dir() / f"{name}.yaml").read_text().splitlines()
        first = next((l.lstrip("# ").strip() for l in lines if l.startswith("#") and "@package" not in l), "")
        out.append((name, first))
    return out
