"""The file a tracking URI names on this machine. Imports nothing of gdexp: the lowest of tracking's
modules, so that both the store's checks (guards) and its waits (writes) can ask it."""
from __future__ import annotations

from pathlib import Path


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite: URI, else None.

    >>> sqlite_path("sqlite:////data/mlflow.db"), sqlite_path("http://h:5000")
    (PosixPath('/data/mlflow.db'), None)
    """
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])
