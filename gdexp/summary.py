"""A sweep's outcome: its runs read back from MLflow, counted and tabulated."""
from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["run_name", "loss", "optimizer", "lr", "status", "final_loss", "best_loss",
           "iterations", "diverged_step", "run_id"]


def sweep_table(cl, experiment_id: str, parent_id: str) -> pd.DataFrame:
    """One row per child run of a sweep, sorted by loss, optimizer, learning rate."""
    runs = cl.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'",
                          max_results=50000)
    rows = []
    for r in runs:
        p, m, t = r.data.params, r.data.metrics, r.data.tags
        failed = r.info.status != "FINISHED"
        rows.append({
            "run_name": r.info.run_name,
            "loss": p.get("loss.name"),
            "optimizer": p.get("optimizer.name"),
            "lr": float(p.get("optimizer.lr", "nan")),
            "status": r.info.status.lower() if failed else t.get("gdexp.status"),
            "final_loss": m.get("final_loss", np.nan),
            "best_loss": m.get("best_loss", np.nan),
            "iterations": m.get("iterations", np.nan),
            "diverged_step": float(t["gdexp.diverged_step"]) if "gdexp.diverged_step" in t else np.nan,
            "run_id": r.info.run_id,
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["loss", "optimizer", "lr"], kind="stable").reset_index(drop=True)


def sweep_counts(table: pd.DataFrame) -> dict[str, float]:
    """runs, diverged, failed; best_lr and max_stable_lr where they exist.

    best_lr: the learning rate of the lowest final loss among runs that did not
    diverge. max_stable_lr: the largest learning rate that did not diverge.
    Comparing losses of different functions means nothing, so a sweep over
    several (loss, optimizer) pairs gets them per pair, as
    `best_lr.<loss>.<optimizer>`, and the plain names only for a single pair.
    """
    out = {
        "runs": float(len(table)),
        "diverged": float((table["status"] == "diverged").sum()),
        "failed": float((~table["status"].isin(["converged", "max_iters", "diverged"])).sum()),
    }
    groups = list(table.groupby(["loss", "optimizer"], sort=True))
    for (loss, optimizer), runs in groups:
        suffix = "" if len(groups) == 1 else f".{loss}.{optimizer}"
        ok = runs[runs["status"].isin(["converged", "max_iters"])]
        if len(ok):
            out[f"best_lr{suffix}"] = float(ok.loc[ok["final_loss"].idxmin(), "lr"])
            out[f"max_stable_lr{suffix}"] = float(ok["lr"].max())
    return out


def format_counts(counts: dict[str, float]) -> str:
    """The counts line, then one line per (loss, optimizer) pair where there are several."""
    plain = {k: v for k, v in counts.items() if k.count(".") < 2}
    lines = [", ".join(f"{k}={v:g}" for k, v in plain.items())]
    pairs = sorted({k.split(".", 1)[1] for k in counts if k.count(".") >= 2})
    for pair in pairs:
        lines.append(f"  {pair}: " + ", ".join(
            f"{k.split('.')[0]}={counts[k]:g}" for k in counts if k.endswith(f".{pair}")))
    return "\n".join(lines)


def format_table(table: pd.DataFrame) -> str:
    shown = table[["run_name", "lr", "status", "final_loss", "iterations"]].copy()
    shown["iterations"] = shown["iterations"].astype("Int64")
    return shown.to_string(index=False, float_format=lambda v: f"{v:.6g}")
