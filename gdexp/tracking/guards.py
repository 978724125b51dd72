"""Checks that turn the ways a store loses runs, or hangs, into one clear error before any run.

Each was reproduced with default settings (shared/notes/scale-out-facts.md,
issue 15): a worker that did not get the sweep's tracking URI writes to a stray
mlflow.db in its own folder; a SQLite file reached from other machines, or
over a network filesystem, drops or corrupts writes; an MLflow client retries
an unreachable server for minutes per request, and a SQLite URI naming a
folder, a device or a file that is no database for 104 s; a folder it cannot
write fails every run after its descent. Nothing here imports MLflow.
"""
from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

from gdexp.core.errors import ConfigError
from gdexp.tracking import env
from gdexp.tracking.uris import sqlite_path

# Filesystem types on which SQLite's locking cannot be trusted (sqlite.org/faq.html#q5).
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "lustre", "gpfs", "beegfs",
              "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "9p", "panfs"}

# Launchers whose jobs run on other machines, by their _target_ (a SQLite file cannot follow).
_CLUSTER_LAUNCHERS = ("SlurmLauncher", "RayAWSLauncher")
_RAY_LAUNCHERS = ("hydra_plugins.gdexp_plugins.RayLauncher", "hydra_ray_launcher.ray_launcher.RayLauncher")

_SERVER_HINT = "use tracking=server tracking.uri=http://HOST:PORT (README, Scaling out)"


def local_dir(artifact_uri: str) -> Path | None:
    """The folder behind a local artifact URI (file://...), None for remote stores."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and artifact_uri.startswith("/"):
        return Path(artifact_uri)
    return None


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


def check_store_uri(uri: str) -> None:
    """Refuse a tracking URI gdexp cannot store runs in, before MLflow retries it for minutes.

    Accepted: ``sqlite:///FILE`` (an SQLite database, or a new file in an existing folder
    gdexp can write), ``http(s)://HOST:PORT`` (a tracking server), a database URL
    (``postgresql+psycopg2://...``, ``mysql+pymysql://...``, ``mssql+...://``) that answers,
    ``databricks`` and ``file:`` (MLflow's own, where MLFLOW_ALLOW_FILE_STORE=true lets MLflow
    use it). A missing folder is not created.

    >>> check_store_uri("ftp://x")
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: tracking.uri='ftp://x': not a store gdexp can record runs in; use sqlite:///PATH.db, http(s)://HOST:PORT (a tracking server) or a database URL (postgresql+psycopg2://USER@HOST/DB)
    """
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if uri.startswith("sqlite:"):
        _check_sqlite(uri)
    elif scheme.split("+")[0] in _DATABASES:
        _check_database(uri)
    elif scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1"):
        # MLflow's own refusal, but after its import and with its traceback: said here in one line.
        raise ConfigError("tracking.uri", uri, "MLflow's file store (file:) is in maintenance mode and refuses "
                          "new runs; use sqlite:///PATH.db (`mlflow migrate-filestore` moves old runs there), "
                          "or set MLFLOW_ALLOW_FILE_STORE=true to use it anyway")
    elif scheme not in ("http", "https", "file", "databricks") and uri != "databricks":
        raise ConfigError("tracking.uri", uri, "not a store gdexp can record runs in; use sqlite:///PATH.db, "
                          "http(s)://HOST:PORT (a tracking server) or a database URL "
                          "(postgresql+psycopg2://USER@HOST/DB)")


def check_writable(folder: Path) -> str | None:
    """Why files cannot be written under `folder` (its nearest existing folder is tried), else None."""
    import tempfile

    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".gdexp-probe-"):
            return None
    except OSError as error:
        return f"cannot write in {folder}: {error.strerror}"


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


def check_planned(spec) -> None:
    """In a job of a sweep: refuse a config that differs from what the sweep validated.

    The sweep's plan (gdexp.tracking.plan) holds each job's config hash, which
    covers its data file's checksum and a user loss's code: a data file replaced
    or edited since validation would otherwise fit some runs of one sweep on
    other data. A search's jobs (no hashes planned) are held to the data checksums.
    """
    folder = env.get(env.SWEEP_DIR)
    pinned = _pinned(folder) if folder else None
    if pinned is None:
        return
    hashes, data = pinned
    checksum = spec.loss.data_sha256()
    if (spec.config_hash in hashes) if hashes else (not checksum or not data or checksum in data):
        return
    path = (spec.config.get("loss") or {}).get("data")
    if checksum and path:
        raise ConfigError("loss.data", path, f"changed since the sweep validated it (sha256 now {checksum[:12]}...): "
                          "this sweep's runs would be fitted on different data; restore the file, or start "
                          "a new sweep")
    raise ConfigError("job", spec.run_name, f"its config hash {spec.config_hash} is not the one the sweep "
                      "validated (a data file or a loss's code changed since); restore it, or start a new sweep")


def _pinned(folder: str) -> tuple[frozenset, frozenset] | None:
    from gdexp.tracking.plan import PLAN

    try:
        stamp = os.stat(Path(folder) / PLAN).st_mtime_ns
    except OSError:
        return None
    return _read_pins(folder, stamp)


@functools.lru_cache(maxsize=4)
def _read_pins(folder: str, stamp: int) -> tuple[frozenset, frozenset] | None:
    # Once per plan file and process: a batched sweep asks for every job.
    from gdexp.tracking.plan import read_plan

    found = read_plan(Path(folder))
    return None if found is None else (frozenset(found.hashes()), frozenset(found.data))


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail at once, with the reason, if a tracking server does not answer /health.

    Any answer below 500 counts (a server behind authentication may refuse the
    probe itself); no connection, a timeout or a server error does not.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error  # here: urllib.request is ~12 ms of every command's start, asked of a server only
    import urllib.request

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


def check_existing_store(uri: str) -> None:
    """Refuse a local store (a SQLite file, a file: folder) that is not there, or is no MLflow store.

    Opening a store with MLflow creates it (and migrates a new SQLite file into
    a ~1 MB empty store): a command that only reads, or resumes into a store it
    names, must say the store is missing instead, and leave nothing behind.
    """
    path = sqlite_path(uri)
    if path is None and uri.startswith("file:"):
        folder = local_dir(uri)
        if folder is not None and not folder.is_dir():
            raise ConfigError("tracking.uri", uri, f"no MLflow store there ({folder} does not exist)")
        return
    if path is None:
        return
    if not path.exists():
        raise ConfigError("tracking.uri", uri, f"no MLflow store there ({path} does not exist); "
                          "name the file a sweep recorded into (its last lines say which)")
    if not path.is_file():
        raise ConfigError("tracking.uri", uri, f"no MLflow store there ({path} is not a regular file)")
    from gdexp.tracking.writes import StoreLocked, wait_unlocked  # here: writes imports this module

    try:  # a store another process holds locked is waited for (and said), not called no store
        is_store = wait_unlocked(lambda: _is_mlflow_sqlite(path), uri)
    except StoreLocked as exc:
        raise ConfigError("tracking.uri", uri, str(exc)) from None
    if not is_store:
        raise ConfigError("tracking.uri", uri, f"no MLflow store there ({path} is not an MLflow "
                          "SQLite database)")


def check_readable_store(uri: str) -> None:
    """Refuse, in one line and at once, a store a reader (report, rerun, load_runs) cannot read:
    a URI gdexp does not know, a SQLite file or folder that is not there (never created), a
    tracking server that does not answer (MLflow would retry it for many seconds), a database
    that does not answer."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if uri.startswith("sqlite:") or scheme == "file":
        check_existing_store(uri)
    elif scheme in ("http", "https"):
        if uri not in _ANSWERED:
            check_reachable(uri)
            _ANSWERED.add(uri)  # once a process: a report downloads many curves from one server
    else:
        check_store_uri(uri)  # a database URL answers, or the scheme is refused


_ANSWERED: set[str] = set()


def _is_mlflow_sqlite(path: Path) -> bool:
    """Whether `path` is an SQLite database holding MLflow's tables (opened read-only).

    Raises:
        sqlite3.OperationalError: "database is locked": another process holds it (after SQLite's
            busy timeout); no answer either way (writes.wait_unlocked waits it out).
    """
    import sqlite3

    from gdexp.tracking.fast.fence import busy_timeout_ms
    from gdexp.tracking.writes import locked

    try:
        with open(path, "rb") as file:
            if file.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                return False
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout_ms() / 1000)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if locked(exc):
            raise
        return False
    except (OSError, sqlite3.Error):
        return False
    return {"runs", "experiments"} <= names


# Database URLs (SQLAlchemy dialects) MLflow keeps runs in.
_DATABASES = ("postgresql", "mysql", "mssql")
_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite(uri: str) -> None:
    path = sqlite_path(uri)
    if path is None or not str(path).strip("/") or "?" in str(path) or str(path).startswith(":memory:"):
        raise ConfigError("tracking.uri", uri, "needs the path of a database file: sqlite:///PATH.db "
                          "(sqlite:////ABSOLUTE/PATH.db)")
    if path.is_dir():
        raise ConfigError("tracking.uri", uri, f"{path} is a folder; name a database file in it, "
                          f"e.g. sqlite:///{path / 'mlflow.db'}")
    if path.exists():
        if not path.is_file():
            raise ConfigError("tracking.uri", uri, f"{path} is not a regular file (a device, a pipe?)")
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_HEADER))
        if head and head != _SQLITE_HEADER:
            raise ConfigError("tracking.uri", uri, f"{path} is not an SQLite database (it does not start "
                              "with the SQLite header); name a new file, or an MLflow store")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError("tracking.uri", uri, f"cannot write {path} (permission denied or read-only)")
    elif not path.parent.is_dir():
        raise ConfigError("tracking.uri", uri, f"the folder {path.parent} does not exist; gdexp does not "
                          f"create a store's folders: mkdir -p {path.parent}")
    reason = check_writable(path.parent)  # SQLite writes its journal beside the file
    if reason:
        raise ConfigError("tracking.uri", uri, f"the store's folder is not writable: {reason}")


def _check_database(uri: str, timeout: int = 5) -> None:
    """A database URL: its driver installed, and the server answering within `timeout` seconds."""
    import sqlalchemy

    try:
        url = sqlalchemy.engine.make_url(uri)
        args = {"connect_timeout": timeout} if url.get_backend_name() in ("postgresql", "mysql") else {}
        engine = sqlalchemy.create_engine(url, connect_args=args)
    except Exception as error:  # noqa: BLE001 - a bad URL or a missing driver, said in one line
        hint = "is its driver installed (README, Scaling out)?"
        if uri.startswith("postgresql"):  # the driver gdexp's extra brings, and the URL that names it
            hint = "pip install 'gdexp[postgres]' and use postgresql+psycopg2:// (README, Scaling out)"
        raise ConfigError("tracking.uri", uri, f"cannot use this database URL ({_first_line(error)}); {hint}") from None
    try:
        with engine.connect():
            pass
    except Exception as error:  # noqa: BLE001 - whatever the driver raises, said in one line
        raise ConfigError("tracking.uri", uri, f"the database does not answer from {socket.gethostname()} "
                          f"({_first_line(error)})") from None
    finally:
        engine.dispose()


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return (text.splitlines() or [type(error).__name__])[0][:200]


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
