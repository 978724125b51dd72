"""The report's first figure, as data: the monitored metric against lr, one series per group.

Computed once and drawn twice, by matplotlib (the PNG of report.md,
figures.overlay_png) and by plotly (report.html, interactive.overlay_figure),
so both show the same points, colours and marks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gdexp.core.outcomes import DESCENT_STATUSES
from gdexp.core.stability import formula
from gdexp.results.groups import GROUP, aggregate

BOUNDS = ("lr_max_stable", "lr_optimal")
# Colours (matplotlib's tab10, then tab20's light halves) and markers, paired so the
# 11th group differs from the 1st by its marker too. Markers: matplotlib's name, plotly's.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
          "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
MARKERS = (("o", "circle"), ("s", "square"), ("^", "triangle-up"), ("D", "diamond"),
           ("v", "triangle-down"), ("P", "cross"), ("h", "hexagon"))


@dataclass
class Series:
    """One group: its cells (aggregate rows, one per lr) and its runs."""

    label: str
    color: str
    marker: tuple[str, str]        # (matplotlib, plotly)
    cells: pd.DataFrame            # gdexp.results.groups.aggregate rows of this group
    runs: pd.DataFrame             # its runs that have a descent result
    best_lr: float
    bounds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def diverged(self) -> pd.DataFrame:
        """The cells where a run diverged: drawn in the band above the plot."""
        return self.cells[self.cells["diverged"] > 0]


@dataclass
class Overlay:
    metric: str                    # the column on the y axis (final_loss, val_loss, ...)
    mode: str                      # "min" or "max": which end is better
    series: list[Series]
    ylim: tuple[float, float]      # the plotted range of results (the band lies above)
    log_y: bool
    repeats: bool                  # some lr of some group ran more than once (seeds): mean and band
    searched: tuple[str, ...] = ()  # keys an Optuna search sampled too: points only, their values in hovers

    @property
    def band_rows(self) -> list[Series]:
        """The series with a diverged cell, one band row each, top row first."""
        return [s for s in self.series if len(s.diverged)]

    @property
    def lrs(self) -> np.ndarray:
        return np.concatenate([s.cells["lr"].to_numpy(float) for s in self.series]) \
            if self.series else np.array([])

    @property
    def ylabel(self) -> str:
        name = self.metric.replace("_", " ")
        return f"{name} (mean over seeds)" if self.repeats else name


def overlay(runs: pd.DataFrame, answers: pd.DataFrame, metric: str, mode: str,
            searched: tuple[str, ...] = ()) -> Overlay:
    """The overlay's data from runs with their GROUP (with_groups) and their answers.

    The y axis is logarithmic for a loss (mode "min": losses span decades) and
    linear for an accuracy. Non-positive results on a log axis sit on its floor.
    Where an Optuna search sampled other keys too (`searched`), neighbouring
    learning rates differ in those as well: points are not joined by a line.
    """
    cells = aggregate(runs, metric)
    done = runs[runs["status"].isin(DESCENT_STATUSES)]
    best = dict(zip(answers[GROUP].astype(str), answers["best_lr"]))
    series = []
    for i, (group, part) in enumerate(cells.groupby(GROUP, observed=True, sort=True)):
        members = done[done[GROUP] == group]
        bounds = {b: sorted(set(members[b].dropna())) for b in BOUNDS if b in members.columns}
        series.append(Series(str(group), COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)],
                             part.reset_index(drop=True), members.reset_index(drop=True),
                             best.get(str(group), np.nan), {b: v for b, v in bounds.items() if v}))
    log_y = mode == "min"
    values = [s.cells[f"{metric}_{k}"] for s in series for k in ("min", "max")]
    values = pd.concat(values).dropna().to_numpy(float) if values else np.array([])
    return Overlay(metric, mode, series, _limits(values, log_y), log_y,
                   bool(len(cells)) and int(cells["runs"].max()) > 1, tuple(searched))


def optimizers(s: Series) -> list[str]:
    """The optimizers a group's runs used (one, unless optimizer is not a group key)."""
    column = "optimizer" if "optimizer" in s.runs.columns else "optimizer.name"
    return sorted(s.runs[column].dropna().astype(str).unique()) if column in s.runs.columns else []


def bound_label(ov: Overlay, name: str, series: Series | None = None) -> str:
    """A theory line's label: the bound, then each optimizer's own formula (gdexp.core.stability).

    >>> s = Series("g", "C0", ("o", "circle"), pd.DataFrame(), pd.DataFrame({"optimizer": ["momentum"]}), 0.1,
    ...            {"lr_max_stable": [0.076]})
    >>> bound_label(Overlay("final_loss", "min", [s], (0, 1), True, False), "lr_max_stable")
    'lr_max_stable = momentum: 2(1+β)/((1-d)λ_max)'
    """
    chosen = [series] if series is not None else [s for s in ov.series if s.bounds.get(name)]
    names = sorted({o for s in chosen for o in optimizers(s)}) or ["gd"]
    return f"{name} = " + "; ".join(formula(o, name) for o in names)


def y_of(values, ov: Overlay) -> np.ndarray:
    """Results as plotted: on a log axis, non-positive ones on the floor."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isnan(values) | (values > 0), values, ov.ylim[0]) if ov.log_y else values


def diverged_text(cell) -> str:
    """How a band marker is labelled: the step, a range over seeds, the fraction that diverged.

    >>> diverged_text({"diverged": 1, "runs": 1, "failed": 0, "diverged_step_min": 3, "diverged_step_max": 3})
    'diverged (step 3)'
    >>> diverged_text({"diverged": 2, "runs": 5, "failed": 0, "diverged_step_min": 3, "diverged_step_max": 9})
    'diverged 2/5 (steps 3-9)'
    """
    lo, hi = cell["diverged_step_min"], cell["diverged_step_max"]
    step = "step unknown" if pd.isna(lo) else f"step{'' if lo == hi else 's'} {step_text(cell)}"
    n, d = int(cell["runs"]) - int(cell["failed"]), int(cell["diverged"])
    share = "" if d == n == 1 else f" {d}/{n}"
    return f"diverged{share} ({step})"


def step_text(cell) -> str:
    """The short label beside a band marker: the step (or step range)."""
    lo, hi = cell["diverged_step_min"], cell["diverged_step_max"]
    if pd.isna(lo):
        return "?"
    return f"{int(lo)}" if lo == hi else f"{int(lo)}-{int(hi)}"


def band_labels(cells: pd.DataFrame, span: tuple[float, float], room: float = 0.03) -> list[str]:
    """The step labels of one band row, blank where an x sits too close to the last one labelled.

    Args:
        span: the x axis range (learning rates); `room`: the least gap between
            labels, as a fraction of its decades.

    >>> cells = pd.DataFrame({"lr": [0.0400, 0.0403, 0.1], "diverged_step_min": [30, 41, 4],
    ...                       "diverged_step_max": [30, 41, 4]})
    >>> band_labels(cells, (1e-3, 1e-1))
    ['30', '', '4']
    """
    gap = room * (np.log10(span[1]) - np.log10(span[0]))
    out, last = [], -np.inf
    for _, cell in cells.iterrows():
        x = np.log10(cell["lr"])
        out.append(step_text(cell) if x - last >= gap else "")
        last = x if out[-1] else last
    return out


def x_range(ov: Overlay) -> tuple[float, float]:
    """The learning-rate axis: every lr tried, with a margin."""
    lrs = ov.lrs
    if not lrs.size:
        return 1e-3, 1.0
    pad = 10 ** 0.15
    return float(lrs.min() / pad), float(lrs.max() * pad)


def _limits(values: np.ndarray, log_y: bool) -> tuple[float, float]:
    """The plotted range: every result, with a margin (a decade each way for a single value)."""
    if log_y:
        values = values[values > 0]
    if not values.size:
        return (1e-3, 1.0) if log_y else (0.0, 1.0)
    lo, hi = float(values.min()), float(values.max())
    if log_y:
        a, b = np.log10(lo), np.log10(hi)
        pad = 0.06 * (b - a) if b > a else 1.0
        return float(10 ** (a - pad)), float(10 ** (b + pad))
    pad = 0.06 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.1
    return lo - pad, hi + pad


def overlay_png(ov: Overlay, title: str, path, dpi: float | None = None):
    """The overlay as a PNG (matplotlib): results below, the band of diverged runs above.

    Each group: its mean result at each lr joined by a line (a gap where every
    run diverged), hollow where some seeds diverged, a min-max band over the
    seeds and the seeds themselves as small dots when there are repeats, a
    star at its best_lr; its diverged learning rates as x in its row of the
    band, beside the step they diverged at; lr_max_stable (dashed) and
    lr_optimal (dotted) as vertical lines in its colour (black when every
    group has the same). Call it inside figures.style().
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from gdexp.report.figures import DPI, new_figure, save_png

    rows = ov.band_rows
    band_in = 0.35 + 0.24 * len(rows) if rows else 0.0
    fig = new_figure((9.0, 4.6 + band_in), dpi=dpi or DPI)
    if rows:
        band, ax = fig.subplots(2, 1, sharex=True, height_ratios=[band_in, 4.2])
    else:
        band, ax = None, fig.add_subplot()
    ax.set_xscale("log")
    if ov.log_y:
        ax.set_yscale("log")
    shared = _shared_bounds(ov)
    for s in ov.series:
        _draw_series(ax, s, ov)
        for name, dash in (("lr_max_stable", "--"), ("lr_optimal", ":")):
            for value in s.bounds.get(name, []):
                color = "black" if value in shared.get(name, ()) else s.color
                for axis in (a for a in (ax, band) if a is not None):
                    axis.axvline(value, color=color, linestyle=dash, linewidth=1.1, zorder=1)
    if band is not None:
        _draw_band(band, rows, x_range(ov))
    ax.set_xlim(*x_range(ov))
    ax.set_ylim(*ov.ylim)
    ax.set(xlabel="learning rate", ylabel=ov.ylabel)
    ax.grid(True, which="major", alpha=0.3)
    (band or ax).set_title(title)
    handles = [Line2D([], [], color=s.color, marker=s.marker[0], markersize=5, label=s.label)
               for s in ov.series]
    handles.append(Line2D([], [], color="0.3", marker="*", markersize=11, markeredgecolor="black",
                          linestyle="none", label="best_lr"))
    if rows:
        handles.append(Line2D([], [], color="0.3", marker="x", linestyle="none",
                              label="diverged (step k): k beside the x"))
    if ov.repeats:
        handles += [Patch(color="0.3", alpha=0.2, label="min-max over seeds"),
                    Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none",
                           label="some seeds diverged")]
    for name, dash in (("lr_max_stable", "--"), ("lr_optimal", ":")):
        if any(s.bounds.get(name) for s in ov.series):
            handles.append(Line2D([], [], color="black", linestyle=dash, label=bound_label(ov, name)))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    save_png(fig, path)
    return fig


def _draw_series(ax, s: Series, ov: Overlay) -> None:
    cells = s.cells
    mean = cells[f"{ov.metric}_mean"].to_numpy(float)
    lr = cells["lr"].to_numpy(float)
    # NaN where no run has a result: the line breaks there instead of bridging a diverged lr.
    if not ov.searched:
        ax.plot(lr, y_of(mean, ov), color=s.color, linewidth=1.4, zorder=3)
    partial = (cells["diverged"] > 0).to_numpy() & ~np.isnan(mean)
    ax.scatter(lr[~partial], y_of(mean[~partial], ov), color=s.color, marker=s.marker[0], s=22, zorder=4)
    ax.scatter(lr[partial], y_of(mean[partial], ov), facecolor="white", edgecolor=s.color,
               marker=s.marker[0], s=26, zorder=4)
    if ov.repeats:
        lo = y_of(cells[f"{ov.metric}_min"], ov)
        hi = y_of(cells[f"{ov.metric}_max"], ov)
        ax.fill_between(lr, lo, hi, color=s.color, alpha=0.15, linewidth=0, zorder=2)
        alive = s.runs[~s.runs["diverged"].astype(bool)]
        ax.scatter(alive["lr"], y_of(alive[ov.metric], ov), color=s.color, s=6, alpha=0.45,
                   linewidth=0, zorder=3)
    if np.isfinite(s.best_lr):
        at = cells.loc[cells["lr"] == s.best_lr, f"{ov.metric}_mean"].iloc[0]
        ax.plot([s.best_lr], y_of([at], ov), marker="*", markersize=13, color=s.color,
                markeredgecolor="black", markeredgewidth=0.7, linestyle="none", zorder=5)


def _draw_band(band, rows: list[Series], span) -> None:
    """One row per group with a diverged lr, top row first; each x labelled with its step."""
    for r, s in enumerate(rows):
        cells = s.diverged
        band.scatter(cells["lr"], np.full(len(cells), r), color=s.color, marker="x", s=34,
                     linewidth=1.6, zorder=3)
        for (_, cell), text in zip(cells.iterrows(), band_labels(cells, span)):
            band.annotate(text, (cell["lr"], r), xytext=(4, 2), textcoords="offset points",
                          fontsize=7, color=s.color, va="bottom", ha="left")
    band.set_ylim(len(rows) - 0.4, -0.7)
    band.set_yticks([])
    band.set_facecolor("#f7eeee")
    band.set_ylabel("diverged\n(step k)", rotation=0, ha="right", va="center", fontsize=8)
    band.tick_params(axis="x", which="both", bottom=False, labelbottom=False)


def _shared_bounds(ov: Overlay) -> dict[str, set]:
    """Bound values every group has: drawn once, in black."""
    out = {}
    for name in BOUNDS:
        sets = [set(s.bounds.get(name, ())) for s in ov.series]
        out[name] = set.intersection(*sets) if len(sets) > 1 else set()
    return out
