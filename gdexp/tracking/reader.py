"""Runs and curves read back from MLflow as typed pandas tables.

MLflow hands params back as strings and a run's curve as a metric history
sampled to `tracking.curve_points` steps; these functions turn the params
back into numbers and read the full curve from the run's `curve.parquet`.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from gdexp.core.errors import ConfigError, NotFound
from gdexp.specs.targets import check_allowed
from gdexp.results.summary import aggregate_runs
from gdexp.results.table import COLUMNS, MEASURED, SUMMARY_METRICS, typed_frame
from gdexp.tracking import TAG as _T
from gdexp.results.text import list_text
from gdexp.tracking.content import STAND_IN, flatten
from gdexp.tracking.guards import local_dir
from gdexp.tracking.store import check_experiment_found, find_run, read_client, resolve_uri, search


def load_runs(experiment: str | None = None, sweep: str | None = None,
              tracking_uri: str | None = None, aggregate: bool = False) -> pd.DataFrame:
    """One row per gdexp run, with typed columns; or, with `aggregate`, one row per group and lr.

    Args:
        experiment: Every run of this experiment (sweep parents left out).
        sweep: The child runs of this sweep's parent run id.
        tracking_uri: The store; MLFLOW_TRACKING_URI wins, then this, then ./mlflow.db.
            With neither `experiment` nor `sweep`: the latest sweep in the store.
        aggregate: return the runs' aggregate instead (gdexp.results.summary.aggregate_runs):
            runs split into groups by every swept key but the learning rate and the seed,
            then one row per group and learning rate with the group's key values,
            `group` (its label), `lr`, `runs`, `failed`, `diverged`,
            `diverged_fraction`, `diverged_step_min`/`_max`, `stable` (no run
            diverged), and for final_loss (and val_loss, val_accuracy where the runs
            have them) `_mean`, `_std`, `_min`, `_max`, `_count` over the runs
            that did not diverge (a diverged run's last finite loss is no result).

    Nothing read imports code: a stored config's `_target_` stays a string
    (gdexp rerun and gdexp report import one only when the user allows it).

    Returns:
        Columns gdexp.results.table.COLUMNS, then every param under its dotted key
        (`optimizer.lr`, `stopping.maxiter`, ...) as a number where every value is one, bool
        where every value is true/false, else the logged string (lists stay
        JSON); a logged null is missing. `lr` is float, `diverged` bool,
        `diverged_step` and `iterations` nullable integers; `status` is
        converged, diverged, max_iters, or the MLflow status (failed, killed,
        running) of a run that did not finish. Sorted by loss, optimizer, lr,
        run name, run id. A param too long for MLflow (logged as a stand-in)
        is read in full from the run's config.yaml.

    Raises:
        ConfigError: one line ``KEY=VALUE: reason``, nothing created: no store at
            `tracking_uri` (a SQLite file that is not there, a server that does not
            answer); and, as gdexp.core.errors.NotFound (also a LookupError), no such
            experiment, no run with the id `sweep`, or no sweep in the store.
    """
    if experiment is not None and sweep is not None:
        raise ValueError("pass experiment or sweep, not both")
    table = runs_table(resolve_uri(tracking_uri), experiment, sweep)
    return aggregate_runs(table) if aggregate else table


def runs_table(uri: str, experiment: str | None = None, sweep: str | None = None,
               fast: bool | None = None) -> pd.DataFrame:
    """load_runs' table of the store at `uri` (resolved), read from MLflow's SQL tables where the
    fast path's fence allows (gdexp.tracking.fast.read), else through MLflow's client.

    Args:
        fast: None: as the fence says; False: through the client (what the fast reader is
            tested against); True: the fast reader (FastPathUnavailable where the fence says no).
    """
    from gdexp.tracking.fast.fence import FastPathUnavailable, fast_path_available

    if fast is not False:
        ok, reason = fast_path_available(uri)
        if not ok and fast:
            raise FastPathUnavailable(reason)
        fast = ok
    if fast:
        from gdexp.tracking.fast.read import read_runs

        frame = read_runs(uri, experiment, sweep)
    else:
        frame = _client_rows(uri, experiment, sweep)
    return typed_frame(_full_params(frame, uri))


def _client_rows(uri: str, experiment: str | None, sweep: str | None) -> pd.DataFrame:
    """The raw rows of fast.read.read_runs, from MLflow's run entities (search_runs)."""
    cl = read_client(uri)
    if experiment is not None:
        check_experiment(cl, experiment, "experiment")
        found = cl.get_experiment_by_name(experiment)
        runs = [r for r in search(cl, [found.experiment_id], "")
                if r.data.tags.get(f"{_T}sweep") != "true"]
    else:
        parent = find_run(cl, sweep, "sweep") if sweep is not None else latest_sweep(cl)
        runs = search(cl, [parent.info.experiment_id],
                       f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    names = {e.experiment_id: e.name for e in cl.search_experiments()}
    return pd.DataFrame([_row(r, names) for r in runs])


def load_curve(run_id: str, tracking_uri: str | None = None,
               artifact_uri: str | None = None) -> pd.DataFrame:
    """A run's curve at every step, from its `curve.parquet` artifact.

    Args:
        run_id: The run.
        tracking_uri: As for load_runs.
        artifact_uri: The run's artifact URI (load_runs' `artifact_uri` column);
            saves a look-up per run when reading many curves.

    Returns:
        Columns step, loss, grad_norm (gdexp.tracking.content.curve_table); lr under a
        schedule; the measurements taken at some steps (val_loss, ..., NaN elsewhere);
        then each parameter by its name (``x[0]``, ``x[1]``, ... or the loss's own
        names, e.g. ``m``, ``b``) when the loss has few enough to track. A diverged
        run's last row is its divergence step.

    Raises:
        FileNotFoundError: a run of a local store without curve.parquet.
        ConfigError: no store at `tracking_uri`; NotFound (a ConfigError): no run with this id.
        mlflow.exceptions.MlflowException: a remote store's run without curve.parquet.
    """
    with artifact_file(run_id, "curve.parquet", tracking_uri, artifact_uri) as path:
        return pd.read_parquet(path)


class StoreReader:
    """A store opened to read, never created: its experiments and runs, for the commands that
    read back (gdexp report, compare, rerun).

    Read from MLflow's SQL tables where the fast path's fence allows (gdexp.tracking.fast.read:
    no mlflow import, ~2 s less a command), else through MLflow's client (a tracking server,
    another schema revision). Runs come back as MlflowClient.get_run returns them, or as
    fast.read.StoredRun, which has the same `info` and `data` fields gdexp reads.

    Raises (the constructor):
        ConfigError: one line, nothing created: no store at `uri`
            (guards.check_readable_store); a store locked past LOCK_WAIT_S (client path).
    """

    def __init__(self, uri: str, fast: bool | None = None):
        """`fast`: None, as the fence says; False, through MLflow's client (what the SQL reads are
        tested against)."""
        from gdexp.tracking.fast.fence import fast_path_available
        from gdexp.tracking.guards import check_readable_store

        check_readable_store(uri)
        self.uri = uri
        self.fast = fast is not False and self._read(fast_path_available)[0]
        self._client = None if self.fast else read_client(uri)

    def _read(self, query, *args):
        """query(uri, *args), waited out while another process holds the store locked (as
        read_client waits): a ConfigError line past LOCK_WAIT_S."""
        from gdexp.tracking.writes import StoreLocked, wait_unlocked

        try:
            return wait_unlocked(lambda: query(self.uri, *args), self.uri)
        except StoreLocked as exc:
            raise ConfigError("tracking.uri", self.uri, str(exc)) from None

    def experiment_ids(self) -> dict[str, str]:
        """name -> id of the store's active experiments (MlflowClient.search_experiments)."""
        if not self.fast:
            return {e.name: e.experiment_id for e in self._client.search_experiments()}
        from gdexp.tracking.fast.read import read_experiments

        return {name: i for i, name, stage in self._read(read_experiments) if stage == "active"}

    def check_experiment(self, name: str, key: str) -> None:
        """NotFound (one line, under `key`): no experiment `name`, or only a deleted one."""
        if not self.fast:
            return check_experiment(self._client, name, key)
        from gdexp.tracking.fast.read import read_experiments

        found = next((e for e in self._read(read_experiments) if e.name == name), None)
        check_experiment_found(found, name, self.uri, key)

    def run(self, run_id: str, key: str):
        """The run `run_id`; NotFound (one line, under the name `key` the user gave the id by)."""
        if not self.fast:
            return find_run(self._client, run_id, key)
        from gdexp.tracking.fast.read import read_run

        run = self._read(read_run, run_id)
        if run is None:
            raise NotFound(key, run_id, f"no such run in {self.uri}")
        return run

    def latest_sweep(self):
        """The sweep parent run started last, over every active experiment (NotFound: none)."""
        if not self.fast:
            return latest_sweep(self._client)
        from gdexp.tracking.fast.read import latest_sweep_id

        return self.run(self._read(latest_sweep_id), "sweep")


def check_experiment(cl, name: str, key: str) -> None:
    """NotFound (one line, under the name `key` the user gave it by) if the store has no experiment
    `name`, or only a deleted one (saying how to restore it)."""
    check_experiment_found(cl.get_experiment_by_name(name), name, cl.tracking_uri, key)


def latest_sweep(cl):
    """The sweep parent run started last, over every experiment of the store."""
    ids = [e.experiment_id for e in cl.search_experiments()]
    found = cl.search_runs(ids, f"tags.{_T}sweep = 'true'", max_results=1,
                           order_by=["attributes.start_time DESC", "attributes.run_id DESC"]) if ids else []
    if not found:
        raise NotFound("tracking.uri", cl.tracking_uri, "no sweep in this store; run one with `gdexp -m ...`")
    return found[0]


@contextmanager
def artifact_file(run_id: str, name: str, tracking_uri: str | None = None,
                  artifact_uri: str | None = None) -> Iterator[Path]:
    """`with artifact_file(run_id, name) as path`: a run's artifact as a local file.

    A local store's file is read where it lies (reading 1,000 curves through
    download_artifacts is many times slower); a remote one is downloaded into
    a temporary folder, removed on exit.
    """
    uri = resolve_uri(tracking_uri)
    if artifact_uri is None:
        artifact_uri = find_run(read_client(uri), run_id, "run_id").info.artifact_uri
    local = local_dir(artifact_uri)  # one rule for "local store": the writer's
    if local is not None:
        path = local / name
        if not path.is_file():
            raise FileNotFoundError(f"run {run_id} has no artifact {name} ({path})")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gdexp-") as tmp:
        yield Path(read_client(uri).download_artifacts(run_id, name, tmp))


def _row(run, experiment_names: dict[str, str]) -> dict:
    from gdexp.tracking.fast.read import RUN_TAGS

    info, p, m, t = run.info, run.data.params, run.data.metrics, run.data.tags
    finished = info.status == "FINISHED"
    row = {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment": experiment_names.get(info.experiment_id, info.experiment_id),
        "loss": p.get("loss.name"),
        "optimizer": p.get("optimizer.name"),
        "lr": p.get("optimizer.lr"),
        **{column: t.get(tag) for column, tag in RUN_TAGS.items()},  # the fast reader's map
        "status": t.get(f"{_T}status") if finished else info.status.lower(),
        "diverged": t.get(f"{_T}diverged") == "true",
        **{name: m.get(name, np.nan) for name in (*SUMMARY_METRICS, *MEASURED)},
        "mlflow_status": info.status,
        "start_time": info.start_time,
        "artifact_uri": info.artifact_uri,
    }
    row.update({key: value for key, value in p.items() if key not in row})
    return row


def stored_config(run_id: str, tracking_uri: str | None = None, artifact_uri: str | None = None,
                  allow_modules: Sequence[str] = ()) -> dict:
    """A run's config.yaml, parsed safely, with every ``_target_`` it names checked for trust.

    For configs read back from a store (``gdexp rerun``, ``gdexp report``):
    a target outside gdexp's core is refused unless its module is in
    ``allow_modules`` (gdexp.specs.targets.check_allowed). Nothing is imported
    here; the caller imports the targets (plan) only after this returns.

    Args:
        run_id, tracking_uri, artifact_uri: as for load_curve.
        allow_modules: the modules the user trusts (``--allow-module``): ``mypkg``
            allows everything in it, ``mypkg.losses`` only what is inside that.

    Raises:
        ConfigError: one line: config.yaml is not a YAML mapping (a tampered file),
            or it names a target the user did not allow.
        FileNotFoundError: the run has no config.yaml.
    """
    with artifact_file(run_id, "config.yaml", tracking_uri, artifact_uri) as path:
        config = parse_config(path.read_text(), path)
    check_targets(config, allow_modules)
    return config


def parse_config(text: str, where) -> dict:
    """A stored config.yaml's text as a dict (YAML's safe loader: no tags, no objects).

    >>> parse_config("loss: {name: booth}", "config.yaml")
    {'loss': {'name': 'booth'}}
    >>> parse_config("loss: [unclosed", "runs/1/config.yaml")
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: config.yaml='runs/1/config.yaml': not a valid config (YAML error at line 1, column 16: expected ',' or ']', but got '<stream end>')
    >>> parse_config("- a list", "config.yaml")
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: config.yaml='config.yaml': not a valid config (a list, not a mapping of sections)
    """
    import yaml

    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ConfigError("config.yaml", str(where), f"not a valid config (YAML error{at}: {problem})") from None
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        kind = {list: "a list", str: "text", type(None): "empty"}.get(type(config), type(config).__name__)
        raise ConfigError("config.yaml", str(where), f"not a valid config ({kind}, not a mapping of sections)")
    return config


def check_targets(config: dict, allow_modules: Sequence[str] = ()) -> None:
    """Refuse a stored config any of whose ``_target_`` keys (loss, optimizer, schedule, ...)
    names code outside gdexp's core that ``allow_modules`` does not allow (one ConfigError line).

    >>> check_targets({"loss": {"_target_": "gdexp.core.losses.Rosenbrock"}})
    >>> check_targets({"loss": {"_target_": "evil.boom"}}, ["evil"])
    >>> check_targets({"optimizer": {"_target_": "evil.boom"}})
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: optimizer._target_='evil.boom': a stored config naming code outside gdexp; it is imported only if you trust it: pass --allow-module evil
    """
    for key, value in flatten(config).items():
        if key == "_target_" or key.endswith("._target_"):
            check_allowed(value, list(allow_modules), key)
    for key, value in user_code(config).items():  # loss=torch names its model, data and criterion
        check_allowed(value, list(allow_modules), key)


def user_code(config: dict) -> dict[str, str]:
    """The dotted paths of user code a config's loss names besides its ``_target_`` (loss=torch's
    ``loss.model``, ``loss.data``, ``loss.criterion``), by config key; {} for other losses.

    >>> user_code({"loss": {"_target_": "gdexp.specs.torch_loss.torch_module", "model": "mynet.model"}})
    {'loss.model': 'mynet.model'}
    """
    from gdexp.specs.torch_loss import TARGET, code_paths

    loss = config.get("loss")
    return code_paths(loss) if isinstance(loss, dict) and loss.get("_target_") == TARGET else {}


def check_allow_list(allow_modules: Sequence[str]) -> None:
    """ConfigError (one line) for an ``--allow-module`` value that is not a module name.

    >>> check_allow_list(["mypkg", "mypkg.losses"])
    >>> check_allow_list(["my-pkg"])
    Traceback (most recent call last):
    ...
    gdexp.core.errors.ConfigError: --allow-module='my-pkg': not a module name like mypkg or mypkg.losses
    """
    # check_allowed checks the list before the path; a path of gdexp's own is then allowed as is.
    check_allowed("gdexp.core.losses.base.Loss", list(allow_modules), "loss._target_")


def _full_params(frame: pd.DataFrame, uri: str) -> pd.DataFrame:
    """Replace params logged as a stand-in (too long for MLflow) by their value in config.yaml."""
    params = [c for c in frame.columns if c not in COLUMNS and frame[c].dtype.kind not in "biufcmM"]  # text
    long = {c: frame[c].astype(object).str.startswith(STAND_IN, na=False).to_numpy(bool) for c in params
            if any(isinstance(v, str) and v.startswith(STAND_IN) for v in frame[c].unique())}  # few distinct
    if not long:
        return frame
    frame = frame.copy()
    for i in np.flatnonzero(np.logical_or.reduce(list(long.values()))):
        with artifact_file(frame.at[i, "run_id"], "config.yaml", uri, frame.at[i, "artifact_uri"]) as path:
            config = flatten(parse_config(path.read_text(), path))
        for c, mask in long.items():
            if mask[i] and c in config:  # the form a user types (gdexp.results.text.list_text)
                frame.at[i, c] = list_text(config[c]) if isinstance(config[c], list) else str(config[c])
    return frame
