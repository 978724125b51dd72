"""Which runs a report covers, the sweeps they came from, and their curves."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import yaml

from gdexp.tracking import TAG
from gdexp.tracking.store import client, resolve_uri
from gdexp.tracking.reader import artifact_file, latest_sweep, load_curve, load_runs


@dataclass
class Group:
    """Runs of one loss (same loss.* params) and one optimizer: they share figures."""

    title: str
    slug: str
    runs: pd.DataFrame
    losses: dict[str, np.ndarray] = field(default_factory=dict)   # run_id -> loss at every step
    paths: dict[str, np.ndarray] = field(default_factory=dict)    # run_id -> (steps, 2) for 2-D losses
    missing: list[str] = field(default_factory=list)              # finished runs without curve.parquet


@dataclass
class Selection:
    uri: str
    by: str              # "sweep" or "experiment"
    key: str             # the parent run id, or the experiment name
    name: str            # the sweep's name, or the experiment name
    runs: pd.DataFrame   # load_runs' table
    parents: list        # the MLflow runs of the sweeps these runs belong to, oldest first

    @property
    def parent_id(self) -> str | None:
        """The sweep parent run every selected run belongs to, if there is one."""
        ids = set(self.runs["sweep_id"])
        return ids.pop() if len(ids) == 1 and len(self.parents) == 1 else None


def select(experiment: str | None, sweep: str | None, tracking_uri: str | None) -> Selection:
    """The runs of an experiment, of one sweep, or of the latest sweep in the store."""
    uri = resolve_uri(tracking_uri)
    cl = client(uri)
    if experiment is not None:
        runs = load_runs(experiment=experiment, tracking_uri=uri)
        ids = sorted(set(runs["sweep_id"].dropna()))
        parents = sorted((cl.get_run(i) for i in ids), key=lambda r: (r.info.start_time, r.info.run_id))
        return Selection(uri, "experiment", experiment, experiment, runs, parents)
    parent = cl.get_run(sweep) if sweep is not None else latest_sweep(cl)
    if parent.data.tags.get(f"{TAG}sweep") != "true":
        raise LookupError(f"run {parent.info.run_id} is not a sweep's parent run "
                          f"(no tag {TAG}sweep=true); pass a parent run id to --sweep")
    runs = load_runs(sweep=parent.info.run_id, tracking_uri=uri)
    name = parent.data.tags.get(f"{TAG}sweep_name") or parent.info.run_name
    return Selection(uri, "sweep", parent.info.run_id, name, runs, [parent])


def groups(selection: Selection) -> list[Group]:
    """The runs split by loss (every loss.* param) and optimizer, each with its curves read."""
    runs = selection.runs[selection.runs["mlflow_status"] == "FINISHED"]
    if runs.empty:
        return []
    loss_keys = [c for c in runs.columns if c.startswith("loss.")]
    key = runs[loss_keys + ["optimizer"]].map(str).agg("|".join, axis=1)
    out, titles = [], set()
    for _, part in runs.groupby(key, sort=True):
        title = f"{part['loss'].iloc[0]} \u00b7 {part['optimizer'].iloc[0]}"
        base, n = title, 2
        while title in titles:  # same loss name, other settings
            title, n = f"{base} ({n})", n + 1
        titles.add(title)
        group = Group(title, _slug(title), part.reset_index(drop=True))
        for run in part.itertuples():
            try:
                curve = load_curve(run.run_id, selection.uri, artifact_uri=run.artifact_uri)
            except FileNotFoundError:
                group.missing.append(run.run_name)
                continue
            group.losses[run.run_id] = curve["loss"].to_numpy()
            coords = [c for c in curve.columns if c not in ("step", "loss", "grad_norm", "lr", "sharpness")]
            if len(coords) == 2:
                group.paths[run.run_id] = curve[coords].to_numpy()
        out.append(group)
    return out


def run_config(selection: Selection, run) -> dict:
    """The resolved config a run was made from (its config.yaml artifact)."""
    with artifact_file(run.run_id, "config.yaml", selection.uri, run.artifact_uri) as path:
        return yaml.safe_load(path.read_text())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "runs"
