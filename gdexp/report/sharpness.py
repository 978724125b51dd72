"""The report's sharpness section: each run's sharpness against 2/lr, under its training loss.

A run logged with ``tracking.sharpness_every=k`` carries, every k steps, the
largest eigenvalue of its loss's Hessian (``sharpness``) and ``2/lr``. On a
quadratic, gradient descent is stable exactly while sharpness < 2/lr; Cohen
et al. 2021 ("Gradient Descent on Neural Networks Typically Occurs at the Edge
of Stability") found that full-batch gradient descent on a neural network
drives the sharpness up until it reaches 2/lr, where it then hovers while the
loss keeps falling, non-monotonically. The figure is theirs: training loss
above, sharpness below with each run's 2/lr as a dashed line of its colour.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gdexp.report import figures, interactive
from gdexp.report.select import Group

# Within this fraction of 2/lr counts as "at the edge" in the table.
EDGE = 0.95
INTRO = ("Sharpness (the largest eigenvalue of the loss's Hessian, measured every few steps by "
         "Lanczos on Hessian-vector products) against 2/lr (dashed, in the run's colour), under the "
         "training loss. Gradient descent on a quadratic is stable exactly while sharpness < 2/lr. "
         "Cohen et al. 2021 found that full-batch gradient descent on a neural network raises the "
         "sharpness (progressive sharpening) until it reaches 2/lr, and that it then hovers there, "
         "at the edge of stability, while the loss keeps falling, no longer monotonically. "
         "Each run is drawn against its own optimizer's threshold (`stability_threshold`): 2/lr for "
         "gd, 2(1+\u03b2)/((1-d) lr) for momentum, 2(1+\u03b2)/((1+2\u03b2) lr) for Nesterov; for Adam "
         "and RMSprop the solid line is the preconditioned sharpness (the top eigenvalue of P^-1 H with "
         "the optimizer's own P = diag(sqrt(v) + eps)) against (2+2\u03b21)/((1-\u03b21) lr) for Adam, 2/lr "
         "for RMSprop (Cohen et al. 2022, \"Adaptive Gradient Methods at the Edge of Stability\").")


def section(parts: list[Group], urls: dict[str, str], out) -> list[tuple]:
    """The section's blocks: for each group with sharpness, its figure (PNG and plotly) and table;
    nothing when no run measured it."""
    measured = [g for g in parts if g.sharpness]
    if not measured:
        return []
    blocks = [("h", 2, "Sharpness and the edge of stability"), ("p", INTRO)]
    for g in measured:
        name = f"fig-{g.slug}-sharpness.png"
        png(g.title, g.runs, g.losses, g.sharpness, out / name)
        blocks += [("h", 3, g.title),
                   ("plot", f"plot-{g.slug}-sharpness", figure(g.title, g.runs, g.losses, g.sharpness, urls),
                    name, f"Sharpness against 2/lr, {g.title}"),
                   edge_table(g.runs, g.sharpness)]
    return blocks


def edge_table(runs: pd.DataFrame, sharpness: dict) -> tuple:
    """A table block: per run, 2/lr at the end, the sharpness at the start, its largest and its
    last value, and the first step it came within EDGE of 2/lr."""
    what, bound = _names(runs, sharpness)
    header = ["run", "lr", f"{bound} (end)", f"{what} at start", "largest", "at the end",
              f"first step >= {EDGE:g} x {bound}"]
    rows = []
    for run in runs.sort_values("lr", kind="stable").itertuples():
        if run.run_id not in sharpness:
            continue
        steps, lam, limit = sharpness[run.run_id]
        ok = np.isfinite(lam)
        if not ok.any():
            continue
        reached = np.flatnonzero(ok & (lam >= EDGE * limit))
        rows.append([str(run.run_name), f"{run.lr:.6g}", _g(limit[ok][-1]), _g(lam[ok][0]), _g(lam[ok].max()),
                     _g(lam[ok][-1]), str(int(steps[reached[0]])) if reached.size else "never"])
    return ("table", header, rows, {1, 2, 3, 4, 5, 6})


def _names(runs: pd.DataFrame, sharpness: dict) -> tuple[str, str]:
    """(what the solid lines are, what the dashed ones are): "sharpness", "2/lr" for gradient
    descent; the stability threshold, and for Adam/RMSprop the preconditioned sharpness, else."""
    plain = all(np.allclose(limit[np.isfinite(limit)], 2 / lr) for lr, (_, _, limit)
                in ((r.lr, sharpness[r.run_id]) for r in runs.itertuples() if r.run_id in sharpness))
    if plain:
        return "sharpness", "2/lr"
    adaptive = "optimizer" in runs.columns and runs["optimizer"].isin(["adam", "rmsprop"]).any()
    return ("preconditioned sharpness" if adaptive else "sharpness"), "stability threshold"


def png(title: str, runs: pd.DataFrame, losses: dict, sharpness: dict, path, size=(7.6, 6.0)):
    """The still figure: loss (log) on top, sharpness with 2/lr dashed below; colour = lr."""
    norm, cmap = figures.lr_norm(runs["lr"]), figures.lr_cmap()
    fig = figures.new_figure(size)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1.4))
    top.set_yscale("log")
    highest = 0.0
    for run in runs.sort_values("lr", kind="stable").itertuples():
        if run.run_id not in sharpness:
            continue
        color = cmap(norm(run.lr))
        loss = losses.get(run.run_id)
        if loss is not None:
            y = np.where(np.isfinite(loss) & (loss > 0), loss, np.nan)
            top.plot(np.arange(len(y)), y, color=color, linewidth=1.0)
        steps, lam, limit = sharpness[run.run_id]
        bottom.plot(steps, lam, color=color, linewidth=1.4, label=f"lr={run.lr:.3g}")
        bottom.plot(steps, limit, color=color, linewidth=1.0, linestyle=(0, (5, 3)))
        finite = np.concatenate([lam[np.isfinite(lam)], limit[np.isfinite(limit)]])
        highest = max(highest, float(finite.max()) if finite.size else 0.0)
    what, bound = _names(runs, sharpness)
    top.set(ylabel="training loss", title=f"{title}: {what} against {bound}")
    bottom.set(xlabel="step", ylabel=f"{what} (solid), {bound.split()[-1]} (dashed)")
    bottom.set_ylim(0, highest * 1.1 if highest > 0 else 1)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    if len(sharpness) <= interactive.CURVE_LEGEND:
        bottom.legend(loc="lower right", fontsize=8)
    figures.save_png(fig, path)
    return fig


def figure(title: str, runs: pd.DataFrame, losses: dict, sharpness: dict, urls: dict[str, str]) -> dict:
    """The plotly twin of png(): two panels on one step axis; hover a curve for its run."""
    norm, cmap = figures.lr_norm(runs["lr"]), figures.lr_cmap()
    what, bound = _names(runs, sharpness)
    data = []
    for run in runs.sort_values("lr", kind="stable").itertuples():
        if run.run_id not in sharpness:
            continue
        color = interactive.hex_color(cmap(norm(run.lr)))
        url = urls.get(run.run_id, "")
        name = f"lr={run.lr:.3g}"
        hover = f"<b>{run.run_name}</b><br>lr: {run.lr:.6g}<br>step %{{x}}<br>%{{y:.6g}}"
        hover += (f"<br>MLflow UI (click): {url}" if url else "") + "<extra>%{fullData.name}</extra>"
        loss = losses.get(run.run_id)
        if loss is not None and len(loss) > 1:
            at = np.unique(np.linspace(0, len(loss) - 1, min(len(loss), 400)).round().astype(int))
            data.append({"type": "scatter", "mode": "lines", "x": at.tolist(), "y": [_finite(v) for v in loss[at]],
                         "name": f"{name}: loss", "legendgroup": name, "showlegend": False, "meta": url,
                         "line": {"color": color, "width": 1.1}, "xaxis": "x", "yaxis": "y",
                         "hovertemplate": hover})
        steps, lam, limit = sharpness[run.run_id]
        data.append({"type": "scatter", "mode": "lines", "x": steps.tolist(), "y": [_finite(v) for v in lam],
                     "name": f"{name}: {what}", "legendgroup": name, "meta": url,
                     "line": {"color": color, "width": 1.6}, "xaxis": "x", "yaxis": "y2", "hovertemplate": hover})
        data.append({"type": "scatter", "mode": "lines", "x": steps.tolist(), "y": [_finite(v) for v in limit],
                     "name": f"{name}: {bound}", "legendgroup": name, "meta": url,
                     "line": {"color": color, "width": 1.1, "dash": "dash"}, "xaxis": "x", "yaxis": "y2",
                     "hovertemplate": hover})
    layout = {
        "title": {"text": f"{title}: {what} against {bound}"}, "font": interactive._FONT, "hovermode": "closest",
        "height": 620, "margin": {"l": 70, "r": 20, "t": 60, "b": 60},
        "legend": {"title": {"text": "click: hide/show"}, "groupclick": "togglegroup"},
        "xaxis": {"title": {"text": "step"}, "anchor": "y2"},
        "yaxis": {"type": "log", "title": {"text": "training loss"}, "domain": [0.62, 1.0],
                  "exponentformat": "power"},
        "yaxis2": {"title": {"text": f"{what} (solid), {bound} (dashed)"}, "domain": [0.0, 0.56],
                   "rangemode": "tozero"},
    }
    return {"data": data, "layout": layout, "config": interactive.CONFIG}


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _g(value) -> str:
    return f"{float(value):.4g}" if np.isfinite(value) else ""
