"""What a sweep hands its jobs through the environment: the one place these names live.

A sweep's jobs may run in this process, in worker processes (joblib, submitit)
or on other machines (Ray, SLURM); the environment is what all of them
inherit or are given (Ray's runtime_env.env_vars). The launching process sets
these for the duration of the sweep (`sweep_environment`), and a launcher
that starts processes elsewhere passes `exported()` on.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

TRACKING_URI = "MLFLOW_TRACKING_URI"   # MLflow's own: the store every job writes to
PARENT_RUN = "GDEXP_PARENT_RUN_ID"     # the sweep's parent run, whose child each job's run is
SWEEP_DIR = "GDEXP_SWEEP_DIR"          # the sweep's folder: its plan, and runs kept for `gdexp resume`
START_DIR = "GDEXP_START_DIR"          # the folder gdexp was started in: users' loss modules are found there
SWEEP_PID = "GDEXP_SWEEP_PID"          # the sweep's process: a worker whose parent it was stops once it is gone
LOCK_WAIT = "GDEXP_LOCK_WAIT_S"        # the user's: seconds to wait for a store another process holds locked
SWEPT = "GDEXP_SWEPT"                  # JSON {"name_keys": [...], "varied": [...]}: what the sweep varies

# MLflow's own knobs, set for gdexp's processes unless the user set them. The retries
# are bounded: a refused connection is retried for ~14 s (sleeps 0, 2, 4, 8 s), enough
# for a server restart, instead of MLflow's ~4 min per request (7 retries, factor 2).
HTTP_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",   # one request (MLflow: 120 s); log_batch of 1000 points takes ~0.1 s
    # MLflow prints "View run ... at: URL" for every run a server closes; the sweep ends
    # with one line saying where all of them are.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

SWEEP_KEYS = (TRACKING_URI, PARENT_RUN, SWEEP_DIR, START_DIR, SWEPT)


def get(name: str) -> str | None:
    """The variable's value, None when unset or empty."""
    return os.environ.get(name) or None


def swept() -> dict:
    """What the running sweep varies (SWEPT): {"name_keys": keys named in run names, "varied":
    keys whose values differ between its runs}; {} outside a sweep."""
    import json

    return json.loads(get(SWEPT) or "{}")


def http_client_defaults(uri: str) -> None:
    """Give MLflow's HTTP client gdexp's settings (HTTP_CLIENT_DEFAULTS) for an http(s) store,
    each unless set already."""
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_CLIENT_DEFAULTS.items():
            os.environ.setdefault(key, value)


@contextmanager
def sweep_environment(values: dict[str, str]):
    """Set the sweep's variables for its duration; restore what was there before."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def exported() -> dict[str, str]:
    """What a job elsewhere needs from the launching process's environment, as set now (in a sweep)."""
    return {k: os.environ[k] for k in (*SWEEP_KEYS, LOCK_WAIT, *HTTP_CLIENT_DEFAULTS) if os.environ.get(k)}
