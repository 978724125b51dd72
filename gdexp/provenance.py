"""What a sweep was run with, recorded on its parent run for reports and reruns."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

KEY_PACKAGES = ("gdexp", "numpy", "pandas", "hydra-core", "omegaconf", "mlflow", "pyarrow")


def provenance(cwd: str | None = None) -> dict[str, str]:
    """Tags (without the gdexp. prefix): versions, platform, git state of `cwd`."""
    commit, dirty = _git_state(cwd)
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
