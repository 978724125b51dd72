"""report.html's interactive figures: plotly figures as plain dicts (data, layout).

Plain dicts, not plotly.graph_objects: a 1,000-run sweep's curves would spend
seconds in validation, and the JSON of a dict is exactly what we wrote, so a
rebuild gives the same bytes. plotly.js itself comes from the plotly package
(render.py inlines it once). Every point or curve of a run hovers with the run's
name, lr, status and result, and carries its MLflow UI address: clicking it
opens the run there (render.py's click handler reads a curve trace's `meta`, else
the point's `customdata`).
"""
# Kept whole (over ~300 lines): report.html's plotly figures and the hover and colour helpers they share.
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gdexp.report.overlay import Overlay, Series, band_labels, bound_label, diverged_text, x_range, y_of

HOVER_STEPS = 150   # points per loss curve in the HTML (log-spaced); the PNG has every step
CURVE_LEGEND = 30   # runs in a group up to which each curve gets a legend entry
STEP0_X = 0.5       # a log axis has no 0: step 0 is drawn here, its tick labelled "0"
CONFIG = {"responsive": True, "displaylogo": False, "scrollZoom": False}
_FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12}


def run_hover(run, urls: dict[str, str], metric: str = "final_loss", keys: tuple[str, ...] = ()) -> str:
    """A run's hover text: name, lr, status, result (or where it diverged), its MLflow address.

    `keys`: params shown too (those an Optuna search sampled besides the lr).

    >>> run = pd.Series({"run_id": "r1", "run_name": "quadratic-gd-lr=0.25", "lr": 0.25,
    ...                  "status": "diverged", "diverged": True, "diverged_step": 7, "final_loss": 2.6e13})
    >>> run_hover(run, {"r1": "http://127.0.0.1:5000/#/experiments/1/runs/r1"})
    '<b>quadratic-gd-lr=0.25</b><br>lr: 0.25<br>status: diverged<br>final loss: diverged at step 7<br>MLflow UI (click): http://127.0.0.1:5000/#/experiments/1/runs/r1'
    """
    if bool(run["diverged"]):
        result = f"diverged at step {_int(run['diverged_step'])}"
    else:
        result = _g(run[metric])
    lines = [f"<b>{run['run_name']}</b>", f"lr: {_g(run['lr'])}",
             *(f"{k}: {_g(run[k]) if isinstance(run[k], float) else run[k]}" for k in keys if k in run),
             f"status: {run['status']}", f"{metric.replace('_', ' ')}: {result}"]
    url = urls.get(run["run_id"])
    if url:
        lines.append(f"MLflow UI (click): {url}")
    return "<br>".join(lines)


def overlay_figure(ov: Overlay, title: str, urls: dict[str, str]) -> dict:
    """The overlay (overlay.overlay_png's twin): results below, the band of diverged runs above.

    Each group's traces share a legend group: a click on its legend entry
    hides or shows all of them.
    """
    rows = ov.band_rows
    band = min(0.06 + 0.045 * len(rows), 0.35) if rows else 0.0
    data = []
    for s in ov.series:
        data += _series_traces(s, ov, urls)
    for r, s in enumerate(rows):
        data.append(_band_trace(s, r, ov, urls))
    data += _bound_traces(ov)
    xrange = [math.log10(v) for v in x_range(ov)]
    lo, hi = ov.ylim
    layout = {
        "title": {"text": title}, "font": _FONT, "hovermode": "closest",
        "height": 560 + int(240 * band), "margin": {"l": 70, "r": 20, "t": 60, "b": 60},
        "legend": {"title": {"text": "click: hide/show a group"}, "itemclick": "toggle"},
        "xaxis": {"type": "log", "title": {"text": "learning rate"}, "range": xrange, "anchor": "y",
                  "exponentformat": "power"},
        "yaxis": {"type": "log" if ov.log_y else "linear", "title": {"text": ov.ylabel},
                  "domain": [0.0, 1.0 - band - (0.03 if rows else 0.0)],
                  "range": [math.log10(lo), math.log10(hi)] if ov.log_y else [lo, hi],
                  "exponentformat": "power"},
    }
    if rows:
        layout["yaxis2"] = {"domain": [1.0 - band, 1.0], "range": [len(rows) - 0.4, -0.7],
                            "showticklabels": False, "zeroline": False, "showgrid": False,
                            "title": {"text": "diverged<br>(step k)", "font": {"size": 11}},
                            "fixedrange": True}
        layout["shapes"] = [{"type": "rect", "xref": "paper", "yref": "y2 domain", "x0": 0, "x1": 1,
                             "y0": 0, "y1": 1, "fillcolor": "#f7eeee", "line": {"width": 0},
                             "layer": "below"}]
    return {"data": data, "layout": layout, "config": CONFIG}


def curves_figure(title: str, runs: pd.DataFrame, losses: dict[str, np.ndarray], ylim, colors,
                  urls: dict[str, str]) -> dict:
    """A group's loss curves: log step axis (a button switches to linear), hover per curve.

    Args:
        runs: the group's runs (run_id, run_name, lr, status, diverged, diverged_step, final_loss).
        losses: run_id -> loss at every step; drawn at HOVER_STEPS log-spaced steps.
        ylim: the loss axis range (figures' limits, so PNG and HTML agree).
        colors: run_id -> the curve's colour (the PNG's lr colour).
    """
    data, ends = [], []
    few = len(runs) <= CURVE_LEGEND
    for run in runs.sort_values("lr", kind="stable").itertuples():
        loss = losses.get(run.run_id)
        if loss is None or len(loss) < 2:
            continue
        steps = hover_steps(len(loss) - 1)
        name = f"lr={run.lr:.3g}"
        url = urls.get(run.run_id, "")
        data.append({
            "type": "scattergl" if len(runs) > 200 else "scatter", "mode": "lines",
            "x": _step_x(steps), "y": [_finite(v) for v in loss[steps]], "customdata": steps.tolist(),
            "name": name, "showlegend": few, "meta": url,
            "line": {"color": colors[run.run_id], "width": 1.3, "dash": "dash" if run.diverged else "solid"},
            "hovertemplate": f"<b>{run.run_name}</b><br>lr: {_g(run.lr)}<br>status: {run.status}"
                             + (f" at step {_int(run.diverged_step)}" if run.diverged else "")
                             + "<br>step %{customdata}<br>loss %{y:.6g}"
                             + (f"<br>MLflow UI (click): {url}" if url else "") + "<extra></extra>",
        })
        if run.diverged:
            finite = np.flatnonzero(np.isfinite(loss) & (loss > 0))
            if finite.size:
                k = int(finite[-1])
                ends.append((_step_x([k])[0], min(float(loss[k]), ylim[1]), run))
    if ends:
        data.append({
            "type": "scatter", "mode": "markers", "name": "diverged (step k)",
            "x": [k for k, _, _ in ends], "y": [v for _, v, _ in ends],
            "marker": {"symbol": "x", "color": "#d62728", "size": 9},
            "hovertext": [run_hover(pd.Series(r._asdict()), urls) for _, _, r in ends],
            "hoverinfo": "text", "customdata": [urls.get(r.run_id, "") for _, _, r in ends],
            "cliponaxis": False,
        })
    if not few:  # no legend entry per run: a colour bar says which lr a colour is
        lrs = np.log10(runs["lr"].to_numpy(float))
        data.append({"type": "scatter", "mode": "markers", "x": [None], "y": [None], "showlegend": False,
                     "hoverinfo": "skip", "marker": {"color": [float(lrs.min())], "cmin": float(lrs.min()),
                                                     "cmax": float(lrs.max()), "colorscale": _viridis(),
                                                     "showscale": True,
                                                     "colorbar": {"title": {"text": "log10 lr"}}}})
    longest = max((len(v) for v in losses.values()), default=2) - 1
    ticks = [STEP0_X] + [10.0 ** e for e in range(0, int(math.log10(max(longest, 1))) + 1)]
    layout = {
        "title": {"text": f"{title}: loss at every step"}, "font": _FONT, "hovermode": "closest",
        "height": 480, "margin": {"l": 70, "r": 20, "t": 80, "b": 60},
        "xaxis": {"type": "log", "title": {"text": "step (log scale; step 0 drawn at 0.5)"},
                  "tickmode": "array", "tickvals": ticks, "ticktext": [_int(t) if t >= 1 else "0" for t in ticks]},
        "yaxis": {"type": "log", "title": {"text": "loss"}, "range": [math.log10(ylim[0]), math.log10(ylim[1])],
                  "exponentformat": "power"},
        "updatemenus": [{"type": "buttons", "direction": "right", "x": 0.0, "y": 1.13, "xanchor": "left",
                         "buttons": [{"label": "log steps", "method": "relayout",
                                      "args": [{"xaxis.type": "log", "xaxis.tickmode": "array"}]},
                                     {"label": "linear steps", "method": "relayout",
                                      "args": [{"xaxis.type": "linear", "xaxis.tickmode": "auto"}]}]}],
    }
    return {"data": data, "layout": layout, "config": CONFIG}


def lr_find_figure(probes: pd.DataFrame, lo: float | None, hi: float | None, urls: dict[str, str]) -> dict:
    """lr_find's probes in order (lr against probe number) and the bracket they closed."""
    data = []
    for diverged, name, symbol, color in ((False, "stable", "circle", "#2ca02c"),
                                          (True, "diverged", "x", "#d62728")):
        part = probes[probes["diverged"] == diverged]
        data.append({"type": "scatter", "mode": "markers", "name": name,
                     "x": part["probe"].tolist(), "y": part["lr"].tolist(),
                     "marker": {"symbol": symbol, "size": 10, "color": color},
                     "hovertext": [f"probe {int(r['probe'])}<br>" + run_hover(r, urls) for _, r in part.iterrows()],
                     "hoverinfo": "text", "customdata": [urls.get(i, "") for i in part["run_id"]]})
    data.append({"type": "scatter", "mode": "lines", "name": "probe order", "x": probes["probe"].tolist(),
                 "y": probes["lr"].tolist(), "line": {"color": "#999999", "width": 1}, "hoverinfo": "skip"})
    shapes = []
    if lo is not None and hi is not None:
        shapes.append({"type": "rect", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": lo, "y1": hi,
                       "fillcolor": "rgba(214,39,40,0.15)", "line": {"width": 0}, "layer": "below"})
    for value, name in ((lo, "lo (stable)"), (hi, "hi (diverged)")):
        if value is not None:
            data.append({"type": "scatter", "mode": "lines", "name": f"bracket {name} = {_g(value)}",
                         "x": [0.5, len(probes) + 0.5], "y": [value, value],
                         "line": {"color": "#2ca02c" if "lo" in name else "#d62728", "dash": "dash"},
                         "hovertext": f"bracket {name} = {_g(value)}", "hoverinfo": "text"})
    if "bracket" in probes.columns:
        known = probes[probes["bracket"] > 0]
        data.append({"type": "scatter", "mode": "lines+markers", "name": "bracket hi/lo - 1",
                     "x": known["probe"].tolist(), "y": known["bracket"].tolist(), "xaxis": "x2", "yaxis": "y2",
                     "line": {"color": "#9467bd"},
                     "hovertemplate": "after probe %{x}: hi/lo - 1 = %{y:.4g}<extra></extra>"})
    layout = {"title": {"text": "lr_find: probes in order, and how the bracket closed"}, "font": _FONT,
              "height": 420, "hovermode": "closest", "shapes": shapes,
              "xaxis": {"title": {"text": "probe"}, "dtick": 1, "domain": [0, 0.55]},
              "yaxis": {"type": "log", "title": {"text": "learning rate"}, "exponentformat": "power"},
              "xaxis2": {"title": {"text": "probe"}, "dtick": 1, "domain": [0.68, 1], "anchor": "y2"},
              "yaxis2": {"type": "log", "title": {"text": "hi / lo - 1"}, "anchor": "x2",
                         "exponentformat": "power"}}
    return {"data": data, "layout": layout, "config": CONFIG}


def hover_steps(last: int, points: int = HOVER_STEPS) -> np.ndarray:
    """Steps 0..last, all of them or `points` log-spaced ones (the first and last always in).

    >>> hover_steps(5).tolist()
    [0, 1, 2, 3, 4, 5]
    >>> s = hover_steps(10_000); int(s[0]), int(s[-1]), len(s) <= 151
    (0, 10000, True)
    """
    if last <= points:
        return np.arange(last + 1)
    return np.unique(np.r_[0, np.geomspace(1, last, points).round().astype(np.int64), last])


def _step_x(steps) -> list[float]:
    """Where a step is drawn on the log step axis: itself, step 0 at STEP0_X (labelled 0)."""
    return [float(s) if s >= 1 else STEP0_X for s in steps]


def _series_traces(s: Series, ov: Overlay, urls: dict[str, str]) -> list[dict]:
    cells, metric = s.cells, ov.metric
    mean = y_of(cells[f"{metric}_mean"], ov)
    hover, custom = [], []
    at = dict(list(s.runs.groupby("lr", sort=False)))  # lr -> its runs, found once
    for _, cell in cells.iterrows():
        members = at.get(cell["lr"], s.runs.iloc[:0])  # none: its runs were killed or failed
        if len(members) == 1:
            hover.append(f"{s.label}<br>" + run_hover(members.iloc[0], urls, metric, ov.searched))
            custom.append(urls.get(members.iloc[0]["run_id"], ""))
        else:
            hover.append(_cell_hover(s.label, cell, metric))
            custom.append("")
    traces = [{
        "type": "scatter", "mode": "markers" if ov.searched else "lines+markers", "name": s.label,
        "legendgroup": s.label,
        "x": cells["lr"].tolist(), "y": [_finite(v) for v in mean],
        "line": {"color": s.color, "width": 2}, "connectgaps": False,
        "marker": {"symbol": [s.marker[1] + ("-open" if d else "") for d in (cells["diverged"] > 0)],
                   "size": 8, "color": s.color},
        "hovertext": hover, "hoverinfo": "text", "customdata": custom,
    }]
    if ov.repeats:
        alive = cells[cells[f"{metric}_count"] > 0]
        lo, hi = y_of(alive[f"{metric}_min"], ov), y_of(alive[f"{metric}_max"], ov)
        traces.append({"type": "scatter", "mode": "lines", "name": f"{s.label}: min-max over seeds",
                       "legendgroup": s.label, "showlegend": False, "hoverinfo": "skip",
                       "x": alive["lr"].tolist() + alive["lr"].tolist()[::-1],
                       "y": [_finite(v) for v in lo] + [_finite(v) for v in hi[::-1]],
                       "fill": "toself", "fillcolor": _alpha(s.color, 0.18), "line": {"width": 0}})
        runs = s.runs[~s.runs["diverged"].astype(bool)]
        traces.append({"type": "scatter", "mode": "markers", "name": f"{s.label}: seeds",
                       "legendgroup": s.label, "showlegend": False,
                       "x": runs["lr"].tolist(), "y": [_finite(v) for v in y_of(runs[metric], ov)],
                       "marker": {"size": 5, "color": s.color, "opacity": 0.5},
                       "hovertext": [f"{s.label}<br>seed {r.get('seed', '?')}<br>" + run_hover(r, urls, metric)
                                     for _, r in runs.iterrows()],
                       "hoverinfo": "text", "customdata": [urls.get(i, "") for i in runs["run_id"]]})
    if np.isfinite(s.best_lr):
        at = cells.loc[cells["lr"] == s.best_lr, f"{metric}_mean"].iloc[0]
        traces.append({"type": "scatter", "mode": "markers", "name": f"{s.label}: best_lr",
                       "legendgroup": s.label, "showlegend": False,
                       "x": [s.best_lr], "y": [_finite(y_of([at], ov)[0])],
                       "marker": {"symbol": "star", "size": 16, "color": s.color,
                                  "line": {"color": "black", "width": 1}},
                       "hovertext": [f"{s.label}<br>best_lr = {_g(s.best_lr)}<br>"
                                     f"{metric.replace('_', ' ')} {'mean ' if ov.repeats else ''}{_g(at)}"],
                       "hoverinfo": "text"})
    return traces


def _band_trace(s: Series, row: int, ov: Overlay, urls: dict[str, str]) -> dict:
    cells = s.diverged
    hover, custom = [], []
    at = dict(list(s.runs[s.runs["diverged"].astype(bool)].groupby("lr", sort=False)))
    for _, cell in cells.iterrows():
        members = at.get(cell["lr"], s.runs.iloc[:0])  # none: its runs were killed or failed
        if int(cell["runs"]) == 1 and len(members) == 1:
            hover.append(f"{s.label}<br>" + run_hover(members.iloc[0], urls, ov.metric, ov.searched))
        else:
            hover.append(f"{s.label}<br>lr: {_g(cell['lr'])}<br>{diverged_text(cell)}<br>runs: "
                         + ", ".join(members["run_name"].astype(str)))
        custom.append(urls.get(members.iloc[0]["run_id"], "") if len(members) else "")
    return {"type": "scatter", "mode": "markers+text", "name": f"{s.label}: diverged", "legendgroup": s.label,
            "showlegend": False, "xaxis": "x", "yaxis": "y2",
            "x": cells["lr"].tolist(), "y": [row] * len(cells),
            "text": band_labels(cells, x_range(ov)), "textposition": "top right",
            "textfont": {"size": 10, "color": s.color},
            "marker": {"symbol": "x", "size": 10, "color": s.color},
            "hovertext": hover, "hoverinfo": "text", "customdata": custom, "cliponaxis": False}


def _bound_traces(ov: Overlay) -> list[dict]:
    """lr_max_stable / lr_optimal as vertical lines in each group's colour, hovering their value."""
    out = []
    lo, hi = ov.ylim
    for s in ov.series:
        for name, dash in (("lr_max_stable", "dash"), ("lr_optimal", "dot")):
            for value in s.bounds.get(name, []):
                out.append({"type": "scatter", "mode": "lines", "name": f"{s.label}: {name}",
                            "legendgroup": s.label, "showlegend": False, "x": [value, value], "y": [lo, hi],
                            "line": {"color": s.color, "dash": dash, "width": 1.2},
                            "hovertext": f"{s.label}<br>{bound_label(ov, name, s)} = {_g(value)}",
                            "hoverinfo": "text"})
    return out


def _cell_hover(label: str, cell, metric: str) -> str:
    name = metric.replace("_", " ")
    n = int(cell["runs"]) - int(cell["failed"])
    lines = [label, f"lr: {_g(cell['lr'])}",
             f"{name}: mean {_g(cell[f'{metric}_mean'])} \u00b1 {_g(cell[f'{metric}_std'])} (std)",
             f"min {_g(cell[f'{metric}_min'])}, max {_g(cell[f'{metric}_max'])}",
             f"{int(cell[f'{metric}_count'])} of {n} runs did not diverge"]
    if int(cell["diverged"]):
        lines.append(diverged_text(cell))
    return "<br>".join(lines)


def _viridis() -> list:
    from gdexp.report.figures import lr_cmap

    cmap = lr_cmap()
    return [[t, hex_color(cmap(t))] for t in np.linspace(0, 1, 9).round(3).tolist()]


def hex_color(rgba) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgba[:3])


def _alpha(color: str, alpha: float) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _g(value) -> str:
    if value is None or pd.isna(value):
        return "n/a"
    return f"{float(value):.6g}"


def _int(value) -> str:
    return "?" if value is None or pd.isna(value) else str(int(value))

