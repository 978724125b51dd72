"""Checks that turn the ways a scaled-out sweep loses runs silently into one clear error.

Each was reproduced with default settings (shared/notes/scale-out-facts.md):
a worker that did not get the sweep's tracking URI writes to a stray
mlflow.db in its own folder; a SQLite file reached from other machines, or
over a network filesystem, drops or corrupts writes; an MLflow client retries
an unreachable server for minutes per request. Nothing here imports MLflow.
"""
from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from gdexp.core.errors import ConfigError
from gdexp.tracking import env

# Filesystem types on which SQLite's locking cannot be trusted (sqlite.org/faq.html#q5).
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "lustre", "gpfs", "beegfs",
              "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "9p", "panfs"}

# Launchers whose jobs run on other machines, by their _target_ (a SQLite file cannot follow).
_CLUSTER_LAUNCHERS = ("SlurmLauncher", "RayAWSLauncher")
_RAY_LAUNCHERS = ("hydra_plugins.gdexp_plugins.RayLauncher", "hydra_ray_launcher.ray_launcher.RayLauncher")

_SERVER_HINT = "use tracking=server tracking.uri=http://HOST:PORT (README, Scaling out)"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite: URI, else None.

    >>> sqlite_path("sqlite:////data/mlflow.db"), sqlite_path("http://h:5000")
    (PosixPath('/data/mlflow.db'), None)
    """
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def filesystem_type(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """The type of the filesystem holding `path` (its nearest existing folder), from `mounts`."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    path = path.resolve()
    best, kind = "", None
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = path == Path(point) or Path(point) in path.parents
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def check_store_filesystem(uri: str, mounts: str = "/proc/mounts") -> None:
    """Refuse a SQLite store on a network filesystem (NFS, Lustre, CIFS, ...)."""
    path = sqlite_path(uri)
    if path is None:
        return
    kind = filesystem_type(path, mounts)
    if kind in NETWORK_FS:
        raise ConfigError("tracking.uri", uri,
                          f"the SQLite file is on a network filesystem ({kind}), where SQLite's "
                          f"locking is unreliable and runs are lost or the database corrupted; "
                          f"{_SERVER_HINT}, or put the file on a local disk")


def check_store_for_launcher(uri: str, launcher) -> None:
    """Refuse a SQLite store when the launcher runs jobs on other machines.

    Args:
        launcher: the `hydra.launcher` config node (its `_target_`, and for Ray its address).
    """
    if sqlite_path(uri) is None or launcher is None:
        return
    target = str(launcher.get("_target_", ""))
    where = None
    if target.endswith(_CLUSTER_LAUNCHERS):
        where = target.rsplit(".", 1)[-1]
    elif target in _RAY_LAUNCHERS:
        address = _ray_address(launcher)
        if not _on_this_machine(address):
            where = f"the Ray cluster at {address}"
    if where is not None:
        raise ConfigError("tracking.uri", uri,
                          f"jobs run on other machines ({where}), and a SQLite file cannot be "
                          f"shared between machines; {_SERVER_HINT}")


def check_job_environment(uri_configured: str | None, sweeper_target: str | None) -> None:
    """In a job of a gdexp sweep: refuse to record when the sweep's environment did not arrive.

    gdexp's sweepers export the parent run id and the resolved tracking URI to
    their jobs. A launcher whose workers do not inherit the launching process's
    environment (a Ray cluster started beforehand) would otherwise write each
    run to a stray mlflow.db in the worker's folder, without a parent.
    """
    if not (sweeper_target or "").startswith("hydra_plugins.gdexp_plugins."):
        return
    missing = [env.PARENT_RUN] if not env.get(env.PARENT_RUN) else []
    if not env.get(env.TRACKING_URI) and _relative(uri_configured):
        missing.append(env.TRACKING_URI)
    if not missing:
        return
    raise ConfigError("tracking.uri", uri_configured,
                      f"this job runs in a process (host {socket.gethostname()}) that did not get the "
                      f"sweep's {' and '.join(missing)}, so its run would go to a stray store or "
                      "lose its sweep: pass them to the workers (as gdexp's hydra/launcher=ray does, in "
                      "Ray's runtime_env.env_vars) or set an absolute tracking.uri")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail at once, with the reason, if a tracking server does not answer /health.

    Any answer below 500 counts (a server behind authentication may refuse the
    probe itself); no connection, a timeout or a server error does not.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if exc.code < 500:
            return
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise ConfigError("tracking.uri", uri,
                      f"the tracking server does not answer from {socket.gethostname()} ({reason}); "
                      "start it (README, Scaling out) or fix the address")


def _relative(uri: str | None) -> bool:
    return not uri or (uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"))


def _ray_address(launcher) -> str | None:
    ray = launcher.get("ray") or {}
    init = ray.get("init") or {}
    return init.get("address")


def _on_this_machine(address: str | None) -> bool:
    # None/"local": a Ray started in this process; "auto": a cluster whose head is on this machine.
    if address in (None, "local", "auto"):
        return True
    host = str(address).removeprefix("ray://").rsplit(":", 1)[0]
    return host in ("localhost", "127.0.0.1", "::1", socket.gethostname()) or host.startswith("127.")
