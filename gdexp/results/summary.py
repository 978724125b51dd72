"""A sweep's outcome in a few lines: counts, best and largest stable learning rates, the runs table."""
from __future__ import annotations

import pandas as pd

from gdexp.core.outcomes import DESCENT_STATUSES, DIVERGED, STABLE


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
        "diverged": float((table["status"] == DIVERGED).sum()),
        "failed": float((~table["status"].isin(DESCENT_STATUSES)).sum()),
    }
    groups = list(table.groupby(["loss", "optimizer"], sort=True))
    for (loss, optimizer), runs in groups:
        suffix = "" if len(groups) == 1 else f".{loss}.{optimizer}"
        ok = runs[runs["status"].isin(STABLE)]
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
