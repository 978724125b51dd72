"""What a sweep was run with, recorded on its parent run for reports and reruns."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

KEY_PACKAGES = ("gdexp", "numpy", "pandas", "hydra-core", "omegaconf", "mlflow", "pyarrow")

# The command line as the user typed it (before gdexp expands grids), for the parent's
# gdexp.command tag; the CLI sets it, a sweep started from Python has sys.argv's.
_typed: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Remember the arguments of `gdexp` as typed."""
    global _typed
    _typed = list(argv)


def command() -> list[str]:
    """The arguments of the running `gdexp` command as typed (without the program name)."""
    return list(_typed) if _typed is not None else sys.argv[1:]


@lru_cache(maxsize=1)
def standard_tags() -> dict[str, str]:
    """MLflow's standard run tags, as its fluent API sets them: the source (the `gdexp` command,
    its git commit where known) and the user."""
    import getpass

    commit, _ = _git_state(str(Path(__file__).resolve().parent))
    if commit == "unknown":
        commit, _ = _git_state(None)
    tags = {"mlflow.source.name": "gdexp", "mlflow.source.type": "LOCAL"}
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        pass
    return tags


def provenance() -> dict[str, str]:
    """Tags (without the gdexp. prefix): versions, platform, git state of the code.

    The git state is that of the checkout gdexp's own code runs from (an
    editable install, a clone with your sweeps); for an installed wheel,
    which has none, that of the folder the sweep was started in.
    """
    commit, dirty = _git_state(str(Path(__file__).resolve().parent))
    if commit == "unknown":
        commit, dirty = _git_state(None)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": json.dumps({p: _version(p) for p in KEY_PACKAGES}, sort_keys=True),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _git_state(cwd: str | None) -> tuple[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"  # not a git checkout, or no git installed
