"""The sweep's parent run: opened before any job starts, closed with the summary."""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from gdexp import tracking
from gdexp.provenance import provenance
from gdexp.summary import format_table, sweep_counts, sweep_table


class ParentRun(Callback):
    """One MLflow parent run per multirun, every job its child.

    The store, the experiment and the parent are created here, in the
    launching process, before any job: jobs that start together on a fresh
    SQLite file would otherwise race on MLflow's schema migration. The parent
    id and the resolved tracking URI reach the jobs through the environment
    (inherited by joblib workers), and are removed at the end.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        uri = tracking.resolve_uri(config.tracking.uri)
        cl = tracking.client(uri)
        exp = tracking.experiment_id(cl, config.tracking.experiment)
        name = config.hydra.runtime.choices.get("sweep") or "multirun"
        tags = {
            f"{tracking.TAG}sweep": "true",
            f"{tracking.TAG}sweep_name": name,
            f"{tracking.TAG}command": shlex.join(["gdexp", *sys.argv[1:]]),
            f"{tracking.TAG}sweep_dir": str(Path(config.hydra.sweep.dir).resolve()),
            **{f"{tracking.TAG}{k}": v for k, v in provenance().items()},
        }
        parent = cl.create_run(exp, run_name=name, tags=tags)
        self._saved = {k: os.environ.get(k) for k in (tracking.PARENT_ENV, "MLFLOW_TRACKING_URI")}
        os.environ[tracking.PARENT_ENV] = parent.info.run_id
        os.environ["MLFLOW_TRACKING_URI"] = uri

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        parent_id = os.environ[tracking.PARENT_ENV]
        uri = os.environ["MLFLOW_TRACKING_URI"]
        try:
            counts = close_sweep(tracking.client(uri), parent_id, uri)
        finally:
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if counts["failed"]:
            sys.exit(f"gdexp: {int(counts['failed'])} of {int(counts['runs'])} runs failed "
                     "(their errors are above and on each run's gdexp.error tag)")


def close_sweep(cl, parent_id: str, uri: str) -> dict:
    """Tabulate the children, log the summary on the parent, print it, close the parent."""
    from mlflow.entities import Metric

    parent = cl.get_run(parent_id)
    exp = parent.info.experiment_id
    table = sweep_table(cl, exp, parent_id)
    counts = sweep_counts(table)
    cl.log_batch(parent_id, metrics=[Metric(k, v, 0, 0) for k, v in counts.items()])
    with tempfile.TemporaryDirectory(prefix="gdexp-") as tmp:
        table.to_csv(Path(tmp) / "summary.csv", index=False)
        cl.log_artifacts(parent_id, tmp)
    cl.set_terminated(parent_id, status="FAILED" if counts["failed"] else "FINISHED")
    print(format_table(table) if len(table) else "(no runs)")
    print(", ".join(f"{k}={v:g}" for k, v in counts.items()))
    print(where_to_look(uri, exp, parent_id))
    return counts


def close_dangling_parent(status: str) -> None:
    """Close a sweep's parent that its end never reached (Ctrl-C, a crash)."""
    parent_id = os.environ.pop(tracking.PARENT_ENV, None)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if parent_id and uri:
        tracking.client(uri).set_terminated(parent_id, status=status)


def where_to_look(uri: str, experiment_id: str, parent_id: str) -> str:
    if uri.startswith("sqlite:"):
        how = f"mlflow ui --backend-store-uri {uri} --port 5000"
        base = "http://127.0.0.1:5000"
    else:
        how, base = "(tracking server)", uri.rstrip("/")
    return (f"Runs are in {uri}, sweep {parent_id}.\n"
            f"Open the MLflow UI: {how}\n"
            f"  then {base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
