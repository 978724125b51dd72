"""The report's batch-size section: how the best and the largest stable learning rate move with
the mini-batch size, beside the linear scaling rule.

Drawn when ``loss.batch_size`` names groups (a sweep over batch sizes, such as
``+sweep=batch_lr``). Goyal et al. 2017 ("Accurate, Large Minibatch SGD:
Training ImageNet in 1 Hour") scale the learning rate linearly with the batch
size; the figure draws that rule as a reference line through the largest
batch's best_lr, to compare against, not as a claim: the rule is a heuristic
for large batches, and small batches' gradient noise bends it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from gdexp.report import figures, interactive
from gdexp.results.groups import GROUP, label

KEY = "loss.batch_size"
FULL = "full batch"
RULE = "linear scaling (Goyal et al. 2017)"


def section(runs: pd.DataFrame, answer: pd.DataFrame, keys: list[str], metric: str, full_size, out) -> list[tuple]:
    """The section's blocks, or none when the batch size does not name groups.

    Args:
        runs: the runs with GROUP; answer: each group's answers (gdexp.results.groups.answers).
        keys: the keys naming the groups.
        full_size: run -> its loss's data points (what a null batch size uses), or None when
            unknown; asked once per series with a full-batch group.
    """
    points = table(runs, answer, keys, full_size)
    if points.empty:
        return []
    name = "fig-batch-size.png"
    png(points, out / name)
    rows = [[s, _size(r), _g(r.best_lr), _g(r.max_stable_lr), _g(r.rule_lr)]
            for s, part in points.groupby("series", sort=False) for r in part.itertuples()]
    return [("h", 2, "Learning rate against batch size"),
            ("p", f"Each batch size's best_lr (the best {metric.replace('_', ' ')}; circles) and "
                  "max_stable_lr (the largest learning rate where no run diverged; triangles), both axes log. "
                  f"The dotted line is the {RULE}: the learning rate proportional to the batch size, drawn "
                  "through the largest batch's best_lr; a reference to compare with, not a prediction. "
                  "A learning rate grid resolves each answer only to its spacing."),
            ("plot", "plot-batch-size", figure(points), name, "Learning rate against batch size"),
            ("table", ["series", "batch size", "best_lr", "max_stable_lr", "linear scaling"], rows, {1, 2, 3, 4})]


def table(runs: pd.DataFrame, answer: pd.DataFrame, keys: list[str], full_size) -> pd.DataFrame:
    """One row per group: series (the other keys' label), batch (points per update), full (bool),
    best_lr, max_stable_lr, rule_lr (the linear scaling rule's lr through the series' largest batch)."""
    if KEY not in keys:
        return pd.DataFrame()
    others = [k for k in keys if k != KEY]
    firsts = runs.drop_duplicates(GROUP).set_index(GROUP)
    rows, sizes = [], {}
    for a in answer.itertuples():
        run = firsts.loc[a.group]
        series = label({k: run[k] for k in others}) or "all runs"
        size, full = run[KEY], pd.isna(run[KEY])
        if full:
            if series not in sizes:
                sizes[series] = full_size(run)
            size = sizes[series]
            if size is None:
                continue
        rows.append({"series": series, "batch": float(size), "full": bool(full),
                     "best_lr": float(a.best_lr), "max_stable_lr": float(a.max_stable_lr)})
    out = pd.DataFrame(rows, columns=["series", "batch", "full", "best_lr", "max_stable_lr"])
    out = out.sort_values(["series", "batch"], kind="stable").reset_index(drop=True)
    out["rule_lr"] = np.nan
    for _, part in out.groupby("series", sort=False):
        anchor = part.dropna(subset=["best_lr"]).tail(1)
        if len(anchor):
            b, lr = float(anchor["batch"].iloc[0]), float(anchor["best_lr"].iloc[0])
            out.loc[part.index, "rule_lr"] = lr * part["batch"] / b
    return out


def png(points: pd.DataFrame, path):
    fig = figures.new_figure((6.4, 4.4))
    ax = fig.add_subplot()
    ax.set(xscale="log", yscale="log", xlabel="batch size (points per update)", ylabel="learning rate",
           title="best and largest stable learning rate against batch size")
    colors = _colors(points)
    for series, part in points.groupby("series", sort=False):
        c = colors[series]
        prefix = "" if len(colors) == 1 else f"{series}: "
        ax.plot(part["batch"], part["best_lr"], marker="o", color=c, label=f"{prefix}best_lr")
        ax.plot(part["batch"], part["max_stable_lr"], marker="^", linestyle="--", color=c,
                label=f"{prefix}max_stable_lr")
        ax.plot(part["batch"], part["rule_lr"], linestyle=":", color="0.4" if len(colors) == 1 else c,
                label=f"{prefix}{RULE}")
        full = part[part["full"]]
        for r in full.itertuples():
            ax.annotate(FULL, (r.batch, r.max_stable_lr if np.isfinite(r.max_stable_lr) else r.best_lr),
                        textcoords="offset points", xytext=(-4, 8), ha="right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    figures.save_png(fig, path)
    return fig


def figure(points: pd.DataFrame) -> dict:
    data = []
    colors = _colors(points)
    for series, part in points.groupby("series", sort=False):
        c = colors[series]
        prefix = "" if len(colors) == 1 else f"{series}: "
        sizes = [_size(r) for r in part.itertuples()]
        for column, name, symbol, dash in (("best_lr", "best_lr", "circle", "solid"),
                                           ("max_stable_lr", "max_stable_lr", "triangle-up", "dash"),
                                           ("rule_lr", RULE, None, "dot")):
            trace = {"type": "scatter", "mode": "lines+markers" if symbol else "lines",
                     "x": part["batch"].tolist(), "y": [_finite(v) for v in part[column]],
                     "name": prefix + name, "line": {"color": c if symbol or len(colors) > 1 else "#666666",
                                                     "dash": dash},
                     "text": sizes, "hovertemplate": f"batch size %{{text}}<br>{name} %{{y:.4g}}<extra></extra>"}
            if symbol:
                trace["marker"] = {"symbol": symbol, "size": 8}
            data.append(trace)
    layout = {"title": {"text": "best and largest stable learning rate against batch size"},
              "font": interactive._FONT, "height": 460, "margin": {"l": 70, "r": 20, "t": 60, "b": 60},
              "xaxis": {"type": "log", "title": {"text": "batch size (points per update)"}},
              "yaxis": {"type": "log", "title": {"text": "learning rate"}, "exponentformat": "power"}}
    return {"data": data, "layout": layout, "config": interactive.CONFIG}


def _colors(points: pd.DataFrame) -> dict:
    names = list(dict.fromkeys(points["series"]))
    cmap = figures.lr_cmap()
    return {n: interactive.hex_color(cmap(i / max(len(names) - 1, 1) if len(names) > 1 else 0.3))
            for i, n in enumerate(names)}


def _size(r) -> str:
    return f"{int(r.batch)} ({FULL})" if r.full else str(int(r.batch))


def _finite(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _g(value) -> str:
    return f"{float(value):.4g}" if np.isfinite(value) else ""
