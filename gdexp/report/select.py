"""Which runs a report covers, the sweeps they came from, and their curves.

The report's one door to the rest of gdexp: the store (tracking, the reader),
the loss a run was made with (plan). Every other report module imports from
here and from gdexp.results, nothing else of gdexp.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from gdexp.core.errors import ConfigError
from gdexp.specs.legacy import upgrade
from gdexp.specs.run_spec import build_spec
from gdexp.tracking import TAG
from gdexp.tracking import store as tracking
from gdexp.tracking.reader import StoreReader, load_curve, load_runs, stored_config
from gdexp.results.groups import GROUP, _norm, _sort_key, group_keys, label, with_groups
from gdexp.results.table import MEASURED  # val_loss, train_loss, sharpness, ...: curves, not coordinates

# Curve columns that are not a coordinate of the parameters (curve.parquet holds
# step, the curves, then one column per parameter, named by the loss's param_names).
CURVE_COLUMNS = frozenset({"step", "loss", "grad_norm", "lr", "2/lr", "full_loss", *MEASURED})


@dataclass
class Group:
    """The runs of one group (gdexp.results.groups): they share the per-group figures."""

    title: str
    slug: str
    runs: pd.DataFrame
    losses: dict[str, np.ndarray] = field(default_factory=dict)   # run_id -> loss at every step
    paths: dict[str, np.ndarray] = field(default_factory=dict)    # run_id -> (steps, 2) for 2-D losses
    coords: tuple[str, str] = ("x0", "x1")                        # the two parameters' names
    missing: list[str] = field(default_factory=list)              # finished runs without curve.parquet
    # run_id -> (steps, sharpness, 2/lr) at the steps it was measured (tracking.sharpness_every)
    sharpness: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class Selection:
    uri: str
    by: str              # "sweep", "sweeps" (a comparison) or "experiment"
    key: str | list      # the parent run id(s), or the experiment name
    name: str            # the sweep's name, "A vs B", or the experiment name
    runs: pd.DataFrame   # load_runs' table, plus `sweep` (the sweep's label) and `experiment_id`
    parents: list        # the MLflow runs of the sweeps these runs belong to, oldest first
    chosen: bool = False  # the latest sweep, picked because none was named
    allow_modules: tuple = ()  # modules a stored _target_ may name (--allow-module); else never imported
    # lr_range_test's ramped runs (stopping.early_stop_threshold > 0 in such a sweep): drawn over the
    # grid in their own section (report.search), kept out of `runs` and the groups
    range_tests: pd.DataFrame | None = None

    @property
    def parent_id(self) -> str | None:
        """The sweep parent run every selected run belongs to, if there is one."""
        ids = set(self.runs["sweep_id"])
        return ids.pop() if len(ids) == 1 and len(self.parents) == 1 else None

    @property
    def folder(self) -> str:
        """The default report folder's name: unique per sweep (name and first 8 of its id)."""
        if self.by == "experiment":
            return _safe(self.key)
        ids = "-".join(p.info.run_id[:8] for p in self.parents)
        return _safe(f"compare-{ids}" if self.by == "sweeps" else f"{self.name}-{ids}")


def select(experiment: str | None, sweeps: list[str] | None, tracking_uri: str | None,
           allow_modules=(), sweep_key: str = "--sweep") -> Selection:
    """The runs of an experiment, of one or several sweeps, or of the latest sweep in the store.

    ``allow_modules`` (``--allow-module``): where a figure needs a run's loss
    rebuilt (contours), a stored ``_target_`` outside gdexp is imported only
    from these modules (loss_of).

    ``sweep_key``: how the user named the sweeps (``--sweep``, compare's ``SWEEP``), for the errors.

    Raises:
        ConfigError: one line, nothing created: no store at the URI (never created
            by reading), no such experiment or run, no sweep in the store, or a run id
            that is not a sweep's parent.
    """
    uri = tracking.resolve_uri(tracking_uri)
    store = StoreReader(uri)
    ids = store.experiment_ids()
    if experiment is not None:
        store.check_experiment(experiment, "--experiment")
        runs = load_runs(experiment=experiment, tracking_uri=uri)
        found = sorted(set(runs["sweep_id"].dropna()))
        parents = sorted((store.run(i, "sweep_id") for i in found), key=lambda r: (r.info.start_time, r.info.run_id))
        runs, tests = _range_tests(_typed(runs, ids, parents), parents)
        return Selection(uri, "experiment", experiment, experiment, runs, parents,
                         allow_modules=tuple(allow_modules), range_tests=tests)
    parents = [store.run(s, sweep_key) for s in sweeps] if sweeps else [store.latest_sweep()]
    for parent in parents:
        if parent.data.tags.get(f"{TAG}sweep") != "true":
            raise ConfigError(sweep_key, parent.info.run_id, f"this run is not a sweep's parent run (no tag "
                              f"{TAG}sweep=true); pass a sweep's parent run id")
    twice = next((s for i, s in enumerate(sweeps or []) if s in sweeps[:i]), None)
    if twice is not None:
        raise ConfigError(sweep_key, twice, "a sweep named twice")
    runs = pd.concat([load_runs(sweep=p.info.run_id, tracking_uri=uri) for p in parents],
                     ignore_index=True)
    names = [sweep_name(p) for p in parents]
    name = names[0] if len(parents) == 1 else " vs ".join(names)
    runs, tests = _range_tests(_typed(runs, ids, parents), parents)
    return Selection(uri, "sweep" if len(parents) == 1 else "sweeps",
                     parents[0].info.run_id if len(parents) == 1 else [p.info.run_id for p in parents],
                     name, runs, parents, chosen=not sweeps,
                     allow_modules=tuple(allow_modules), range_tests=tests)


def _range_tests(runs: pd.DataFrame, parents: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs, lr_range_test's ramped runs): those with stopping.early_stop_threshold > 0 in a
    sweep whose parent carries lr_range_test's settings."""
    ids = {p.info.run_id for p in parents if any(k.startswith("lr_range_test.") for k in p.data.params)}
    column = "stopping.early_stop_threshold"
    if not ids or column not in runs.columns:
        return runs, runs.iloc[:0]
    ramped = runs["sweep_id"].isin(ids) & (pd.to_numeric(runs[column], errors="coerce") > 0)
    return runs[~ramped].reset_index(drop=True), runs[ramped].reset_index(drop=True)


def sweep_name(parent) -> str:
    """The sweep's name: its parent run's (what defines it, ``lr_grid optimizer=momentum``; a name
    given in the MLflow UI since), else its gdexp.sweep_name tag."""
    return parent.info.run_name or parent.data.tags.get(f"{TAG}sweep_name")


def started(parent) -> str:
    """A run's start time, UTC, to the second."""
    when = datetime.fromtimestamp(parent.info.start_time / 1000, tz=timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def sweep_labels(parents: list, runs: pd.DataFrame | None = None) -> dict[str, str]:
    """parent run id -> how a comparison names the sweep: by the keys in which the sweeps differ.

    Those keys are the ones that split the runs of all the sweeps into groups
    (gdexp.results.groups.group_keys: an option's own keys follow its choice)
    and take one value within some sweep: ``optimizer=momentum`` against
    ``optimizer=gd``. A key one sweep varies and another fixes shows its
    values (``seed=0,1,2``). Sweeps alike in every key are named by their
    parent run's name, and where that repeats too, by when each started
    (and, started in the same second, by their run ids' first 8 characters
    too); never by a hash alone. One sweep: its name.
    """
    names = [sweep_name(p) for p in parents]
    ids = [p.info.run_id for p in parents]
    if len(parents) < 2 or runs is None or runs.empty:
        return dict(zip(ids, names))
    parts = {i: runs[runs["sweep_id"] == i] for i in ids}
    keys = [k for k in group_keys(runs) if k in runs.columns and not k.startswith("tracking.")
            and any(part[k].map(_norm).nunique(dropna=False) == 1 for part in parts.values() if len(part))]
    keys = [k for k in keys if len({_values(part[k]) for part in parts.values()}) > 1]
    if keys:
        labels = {i: ", ".join(f"{_key(k)}={_values(parts[i][k])}" for k in keys) for i in ids}
        if len(set(labels.values())) == len(ids):
            return labels
    if len(set(names)) == len(names):
        return dict(zip(ids, names))
    labels = {p.info.run_id: f"{n} (started {started(p)})" for p, n in zip(parents, names)}
    if len(set(labels.values())) == len(labels):
        return labels
    # Started within the same second (two commands at once): the run id tells them apart.
    return {i: f"{label[:-1]}, run {i[:8]})" for i, label in labels.items()}


def _values(column: pd.Series) -> str:
    """A key's values in one sweep, as typed: ``momentum``, ``0,1,2``."""
    values = sorted({_norm(v) for v in column}, key=_sort_key)
    return ",".join(label({"k": v}).partition("=")[2] for v in values)


def _key(key: str) -> str:
    return label({key: 0}).rpartition("=")[0]


def grouped(sel: Selection) -> tuple[pd.DataFrame, list[str]]:
    """The runs with their GROUP column, and the keys that name the groups.

    A comparison labels every sweep's runs with the same keys: those that name
    groups within any of the sweeps (a key that differs only between the
    sweeps is said once, in the comparison's table, not in every label), each
    label prefixed with its sweep.
    """
    runs, searched = sel.runs, searched_keys(sel.parents)
    if sel.by != "sweeps":
        keys = group_keys(runs, searched)
        return with_groups(runs, keys), keys
    keys = []
    for _, part in runs.groupby("sweep", sort=False):
        keys += [k for k in group_keys(part, searched) if k not in keys]
    runs = with_groups(runs, keys)
    order = list(sweep_labels(sel.parents, sel.runs).values())
    labels = runs["sweep"].astype(str) + ": " + runs[GROUP].astype(str)
    categories = [f"{s}: {g}" for s in order for g in runs[GROUP].cat.categories]
    runs[GROUP] = pd.Categorical(labels, categories=[c for c in categories if c in set(labels)], ordered=True)
    return runs, keys


def searched_keys(parents: list) -> list[str]:
    """The keys an Optuna sweep searched besides the learning rate (its `gdexp.optuna_best.*` tags)."""
    prefix = f"{TAG}optuna_best."
    return sorted({k[len(prefix):] for p in parents for k in p.data.tags if k.startswith(prefix)})


def read_curves(sel: Selection, runs: pd.DataFrame, title: str, slug: str) -> Group:
    """A group's runs with their curves read from each run's curve.parquet."""
    group = Group(title, slug, runs.reset_index(drop=True))
    for run in group.runs.itertuples():
        if run.mlflow_status != "FINISHED":
            continue
        try:
            curve = load_curve(run.run_id, sel.uri, artifact_uri=run.artifact_uri)
        except FileNotFoundError:
            group.missing.append(run.run_name)
            continue
        group.losses[run.run_id] = curve["loss"].to_numpy()
        # Each optimizer's own pair: Adam's and RMSprop's preconditioned sharpness, the others' sharpness,
        # against the run's stability_threshold (2/lr for gd; runs recorded before it: 2/lr).
        measured = "preconditioned_sharpness" if "preconditioned_sharpness" in curve.columns else "sharpness"
        if measured in curve.columns and curve["sharpness"].notna().any():
            at = curve["sharpness"].notna().to_numpy()
            bound = next((c for c in ("stability_threshold", "2/lr") if c in curve.columns), None)
            limit = curve[bound].to_numpy()[at] if bound else np.full(at.sum(), 2 / run.lr)
            group.sharpness[run.run_id] = (curve["step"].to_numpy()[at], curve[measured].to_numpy()[at], limit)
        coords = coordinates(curve.columns)
        if len(coords) == 2:
            group.paths[run.run_id] = curve[coords].to_numpy()
            group.coords = tuple(coords)
    return group


def coordinates(columns) -> list[str]:
    """The curve columns that are the loss's parameters (x0, x1... or its param_names).

    >>> coordinates(["step", "loss", "grad_norm", "slope", "intercept"])
    ['slope', 'intercept']
    >>> coordinates(["step", "loss", "grad_norm", "lr", "x0", "x1"])
    ['x0', 'x1']
    >>> coordinates(["step", "loss", "grad_norm", "train_loss", "train_accuracy", "val_loss"])
    []
    """
    return [c for c in columns if c not in CURVE_COLUMNS]


def run_config(selection: Selection, run) -> dict:
    """The resolved config a run was made from (its config.yaml artifact), its targets checked
    for trust (gdexp.tracking.reader.stored_config: ConfigError for a module not allowed)."""
    return stored_config(run.run_id, selection.uri, run.artifact_uri, selection.allow_modules)


def loss_of(selection: Selection, run):
    """The Loss a run descended, rebuilt from its config.yaml (never from a module not allowed)."""
    return build_spec(upgrade(run_config(selection, run))).loss


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI at `ui`.

    >>> run_url("http://127.0.0.1:5000/", "1", "ab12")
    'http://127.0.0.1:5000/#/experiments/1/runs/ab12'
    """
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _typed(runs: pd.DataFrame, experiment_ids: dict[str, str], parents: list) -> pd.DataFrame:
    runs = runs.copy()
    runs["experiment_id"] = runs["experiment"].map(experiment_ids)
    runs["sweep"] = runs["sweep_id"].map(sweep_labels(parents, runs))
    return runs


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def slug(text: str) -> str:
    """A file-name part from a group label.

    >>> slug("optimizer=adam, loss.eigenvalues=[1,100]")
    'optimizer-adam-loss-eigenvalues-1-100'
    """
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:80].strip("-") or "runs"
