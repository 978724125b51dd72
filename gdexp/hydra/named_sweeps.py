"""Named sweeps: every file in sweeps/ is selectable as `gdexp +sweep=NAME`.

Two folders hold them: the ones gdexp ships (inside the package once
installed) and ./sweeps/ in the folder gdexp runs in, the user's own; a
user's sweep of the same name as a shipped one is the one used.
"""
from __future__ import annotations

from pathlib import Path

from gdexp.hydra.paths import sweeps_dir

USER_FOLDER = "sweeps"  # relative to the folder gdexp runs in
_stored: tuple | None = None  # what register_sweeps last stored: the ConfigStore and each file's text


def available() -> dict[str, Path]:
    """Each sweep's name and file: the shipped ones, then the user's ./sweeps/*.yaml over them."""
    found = {p.stem: p for p in sorted(sweeps_dir().glob("*.yaml"))}
    user = Path.cwd() / USER_FOLDER
    if user.is_dir() and user.resolve() != sweeps_dir().resolve():
        found.update({p.stem: p for p in sorted(user.glob("*.yaml"))})
    return dict(sorted(found.items()))


def register_sweeps() -> None:
    """Store each sweep file in the ConfigStore group `sweep`, package _global_.

    The ConfigStore, not a search path, so `+sweep=NAME` resolves the same from
    any working folder and from an installed wheel, an unknown name fails
    with Hydra's list of the sweeps that exist instead of quietly becoming a
    string value, and a file's `# @package` line may stand anywhere in its
    header comment (every sweep is global).

    Stored again only when the files changed (another folder's ./sweeps/, a file edited: their
    texts are compared, reading is cheap and parsing is not): each
    `gdexp.run`, `gdexp.sweep` or in-process command calls this, and parsing every sweep file
    was a quarter of an in-process run's time. A sweep no longer available is dropped from the
    group, not left selectable from a folder the process has left.
    """
    global _stored
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    found = available()
    texts = {name: path.read_text() for name, path in found.items()}
    key = (cs, tuple((name, str(path), texts[name]) for name, path in found.items()))
    if key == _stored:
        return
    # Every file parsed before the group is replaced: a file that fails to parse leaves the group
    # and the record of what it holds as they were, and is read again on the next call.
    nodes = {name: _renamed(_parsed(name, found[name], text)) for name, text in texts.items()}
    cs.repo.pop("sweep", None)
    for name, node in nodes.items():
        cs.store(group="sweep", name=name, node=node, package="_global_")
    _stored = key


def _parsed(name: str, path: Path, text: str):
    """A sweep file's text as an OmegaConf node.

    Raises:
        ConfigError: the file is not YAML OmegaConf reads, named with the parser's first line.
    """
    from omegaconf import OmegaConf

    from gdexp.core.errors import ConfigError

    try:
        return OmegaConf.create(text)
    except Exception as exc:  # noqa: BLE001 - yaml's and OmegaConf's errors alike: the file is the user's
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError("sweep", name, f"{path} is not a sweep file gdexp can read: {first}") from None


def _renamed(node):
    """A sweep file written for gdexp 0.1: its `budget:` section and `budget.*` params under
    today's names (gdexp.specs.legacy.RENAMED), with the deprecation warning."""
    from omegaconf import OmegaConf

    from gdexp.specs.legacy import RENAMED, warn_renamed

    if "budget" in node:
        for old, value in OmegaConf.to_container(node.pop("budget")).items():
            if f"budget.{old}" in RENAMED:
                warn_renamed(f"budget.{old}")
                OmegaConf.update(node, RENAMED[f"budget.{old}"], value, force_add=True)
    params = OmegaConf.select(node, "hydra.sweeper.params")
    for key in list(params or {}):
        if key in RENAMED:
            warn_renamed(key)
            params[RENAMED[key]] = params.pop(key)
    return node


def describe() -> list[tuple[str, str]]:
    """(name, first header line) for each sweep: the one-line listings in --help."""
    out = []
    for name, path in available().items():
        lines = path.read_text().splitlines()
        first = next((line.lstrip("# ").strip() for line in lines
                      if line.startswith("#") and "@package" not in line), "")
        mine = "" if path.parent.resolve() == sweeps_dir().resolve() else f" [{USER_FOLDER}/{path.name}]"
        out.append((name, first + mine))
    return out


def is_multirun(name: str) -> bool:
    """Whether the named sweep runs as a multirun (every shipped one does)."""
    path = available().get(name)
    return path is not None and mode_in(path) == "MULTIRUN"


def mode_in(path) -> str | None:
    """The hydra.mode a sweep file sets (``RUN``, ``MULTIRUN``), or None."""
    from omegaconf import OmegaConf

    mode = OmegaConf.select(OmegaConf.load(path), "hydra.mode")
    return None if mode is None else str(mode).removeprefix("RunMode.")
