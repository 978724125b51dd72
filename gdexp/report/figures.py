"""The report's still figures: the overlay, loss curves, descent paths on contours.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot,
no global figure state), and saved without a Software stamp; built inside
`style()`, a user's matplotlibrc cannot change them: the same runs give the
same PNG bytes.
"""
# Kept whole (over ~300 lines): the matplotlib set-up the figure modules share, beside the still figures.
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import matplotlib as mpl
import matplotlib.cm  # noqa: F401 - mpl.cm, mpl.style below
import matplotlib.style  # noqa: F401
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure

DPI = 100
LABELS = 12                       # direct lr labels on a loss-curve figure, at most
DIVERGED_STYLE = (0, (4, 2))      # dashed: a diverged run, in every figure
CONTOUR_GRID = 160                # points per axis of the contour grid
# How far above the bounded runs (and every start) the loss axis reaches: the default
# divergence threshold's factor, so a threshold divergence shows whole and an overflow to
# 1e300 does not flatten every other curve.
HEADROOM = 1e4
# A fixed salt for SVG ids, should a figure ever be saved as SVG (else they are random);
# long paths drawn in chunks, so Agg takes 10,000-step curves in one piece.
_RC = {"svg.hashsalt": "gdexp", "path.simplify": True, "agg.path.chunksize": 20000,
       "font.size": 9, "axes.titlesize": 10}


@contextmanager
def style():
    """matplotlib's defaults plus gdexp's few settings, whatever the user's rc says."""
    with mpl.style.context("default"), mpl.rc_context(_RC):
        yield


def new_figure(size: tuple[float, float], dpi: float = DPI, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=size, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path) -> None:
    fig.savefig(path, format="png", dpi=fig.dpi, metadata={"Software": None})


@lru_cache(maxsize=1)
def lr_cmap() -> ListedColormap:
    """viridis without its last, palest tenth: a yellow line or label on white is hard to read."""
    return ListedColormap(mpl.colormaps["viridis"](np.linspace(0.0, 0.88, 256)), name="gdexp_lr")


def lr_norm(lrs) -> LogNorm:
    """Log colour scale over the learning rates (widened a little when they are all equal)."""
    lrs = np.asarray(lrs, dtype=float)
    lo, hi = float(np.nanmin(lrs)), float(np.nanmax(lrs))
    return LogNorm(lo, hi) if hi > lo else LogNorm(lo / 1.5, hi * 1.5)


def lr_colorbar(fig: Figure, ax, norm: LogNorm, pad: float = 0.05) -> None:
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=lr_cmap())
    fig.colorbar(sm, ax=ax, label="learning rate", pad=pad)


def loss_curves(title: str, runs, losses: dict[str, np.ndarray], path) -> Figure:
    """Every run's loss at every step on a log axis, coloured by lr, each labelled by its lr.

    When runs end early (some curve is under a tenth of the longest: runs that
    blew up in a few steps), the step axis is logarithmic past step 1
    (symlog), so their few steps are not a vertical line at 0. The runs that
    did not diverge carry their lr at the right edge (at most LABELS of them,
    spread over the lrs); a diverged run's curve is dashed and ends with an x
    at its divergence step (on the top edge when its last loss lies above it).

    Args:
        runs: load_runs rows of one group (run_id, lr, diverged).
        losses: run_id -> the full loss curve (from curve.parquet).
    """
    norm = lr_norm(runs["lr"])
    fig = new_figure((7.6, 4.4))
    ax = fig.add_subplot()
    ax.set_yscale("log")
    lo, hi = y_limits(losses, set(runs.loc[runs["diverged"], "run_id"]))
    lengths = [len(v) for v in losses.values()]
    longest = max(lengths, default=2) - 1 or 1
    if lengths and min(lengths) - 1 < 0.1 * longest:
        ax.set_xscale("symlog", linthresh=1, linscale=0.4)

    def curve(run):
        loss = losses.get(run.run_id)
        if loss is None:
            return None, None
        y = np.where(np.isfinite(loss) & (loss > 0), loss, np.nan)
        finite = np.flatnonzero(~np.isnan(y))
        end = (finite[-1], min(y[finite[-1]], hi)) if run.diverged and finite.size else None
        return np.column_stack([np.arange(len(y)), y]), end

    ends = _draw_runs(ax, runs, norm, curve, width=1.1)
    if ends:
        xs, ys = zip(*ends)
        ax.scatter(xs, ys, color="tab:red", marker="x", s=30, zorder=3, clip_on=False,
                   label="diverged: its curve ends at that step")
        ax.legend(loc="upper right")
    ax.set_xlim(0, longest)
    ax.set_ylim(lo, hi)
    _label_ends(ax, runs, losses, norm, (lo, hi))
    ax.set(xlabel="step" + (" (log scale past 1)" if ax.get_xscale() == "symlog" else ""),
           ylabel="loss", title=f"{title}: loss at every step")
    ax.grid(True, which="major", alpha=0.3)
    lr_colorbar(fig, ax, norm, pad=0.02)
    save_png(fig, path)
    return fig


def _label_ends(ax, runs, losses: dict[str, np.ndarray], norm: LogNorm, ylim) -> None:
    """The lr of each run that did not diverge, at the right edge, spread so no two overlap."""
    ends = []
    for run in runs[~runs["diverged"]].sort_values("lr", kind="stable").itertuples():
        loss = losses.get(run.run_id)
        if loss is None or not len(loss) or not np.isfinite(loss[-1]) or loss[-1] <= 0:
            continue
        ends.append((run.lr, len(loss) - 1, float(loss[-1])))
    if len(ends) > LABELS:  # an even choice over the lrs, the smallest and largest kept
        ends = [ends[i] for i in np.unique(np.linspace(0, len(ends) - 1, LABELS).round().astype(int))]
    a, b = np.log10(ylim[0]), np.log10(ylim[1])
    wanted = [(np.log10(min(max(y, ylim[0]), ylim[1])) - a) / (b - a) for _, _, y in ends]
    cmap = lr_cmap()
    for (lr, step, y), at in zip(ends, spread(wanted, gap=0.055)):
        ax.annotate(f"{lr:.3g}", xy=(step, y), xytext=(1.015, at), textcoords=("axes fraction"),
                    fontsize=7, color=cmap(norm(lr)), va="center", annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", color=cmap(norm(lr)), linewidth=0.5,
                                    shrinkA=0, shrinkB=0))


def spread(wanted: list[float], gap: float, lo: float = 0.0, hi: float = 1.0) -> list[float]:
    """Label positions near `wanted` with at least `gap` between neighbours, within [lo, hi].

    The order of the labels is kept; a crowd is pushed apart and then back inside.

    >>> [round(v, 2) for v in spread([0.5, 0.5, 0.5], 0.1)]
    [0.5, 0.6, 0.7]
    >>> [round(v, 2) for v in spread([0.95, 1.0], 0.1)]
    [0.9, 1.0]
    """
    order = np.argsort(wanted, kind="stable")
    y = np.asarray(wanted, dtype=float)[order]
    for i in range(1, len(y)):
        y[i] = max(y[i], y[i - 1] + gap)
    if len(y) and y[-1] > hi:
        y[-1] = hi
        for i in range(len(y) - 2, -1, -1):
            y[i] = min(y[i], y[i + 1] - gap)
    y = np.maximum(y, lo + gap * np.arange(len(y)))
    out = np.empty_like(y)
    out[order] = y
    return out.tolist()


def _draw_runs(ax, runs, norm: LogNorm, line_of, width: float) -> list:
    """Each run's line coloured by its lr: one solid collection, one dashed for the diverged.

    Args:
        line_of: run -> (xy (n, 2) or None to skip the run, a point to mark or None).

    Returns:
        The points to mark, in run order.
    """
    cmap, marks = lr_cmap(), []
    for diverged in (False, True):
        segments, colors = [], []
        for run in runs[runs["diverged"] == diverged].itertuples():
            xy, mark = line_of(run)
            if xy is None:
                continue
            segments.append(xy)
            colors.append(cmap(norm(run.lr)))
            if mark is not None:
                marks.append(mark)
        if segments:
            ax.add_collection(LineCollection(segments, colors=colors, linewidths=width,
                                             linestyles=DIVERGED_STYLE if diverged else "solid"),
                              autolim=False)
    return marks


def y_limits(losses: dict[str, np.ndarray], diverged: set[str]) -> tuple[float, float]:
    """Log-axis limits holding every curve, but at most HEADROOM above the runs that stayed bounded.

    Set from the data, not autoscaled: NaN-holed log-scaled collections
    autoscale unreliably, and explicit limits are reproducible.
    """
    lo, hi, bounded = np.inf, -np.inf, -np.inf
    for run_id, loss in losses.items():
        with np.errstate(invalid="ignore"):
            y = loss[np.isfinite(loss) & (loss > 0)]
        if y.size:
            lo, hi = min(lo, y.min()), max(hi, y.max())
            bounded = max(bounded, y[0] if run_id in diverged else y.max())
    if not np.isfinite(lo):
        return 1e-3, 1.0
    if np.isfinite(bounded):
        hi = min(hi, bounded * HEADROOM)
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    pad = 0.04 * (np.log10(hi) - np.log10(lo))
    return 10 ** (np.log10(lo) - pad), 10 ** (np.log10(hi) + pad)


def plot_box(paths: list[np.ndarray], diverged: list[bool], minima) -> tuple[float, float, float, float]:
    """(x_lo, x_hi, y_lo, y_hi) around the starts, the minima and the paths that stayed bounded.

    Diverged paths are left out (they would stretch the box to infinity)
    and get clipped at its edge instead.
    """
    # A run that did not diverge is finite at every step (nan/inf count as divergence),
    # so its extremes stand for it: no 10-million-point concatenation for 1,000 runs.
    points = [p[:1] for p in paths]
    points += [np.stack([p.min(axis=0), p.max(axis=0)]) for p, d in zip(paths, diverged) if not d and len(p)]
    if minima is not None:
        points.append(np.asarray(minima, dtype=float))
    xy = np.concatenate([p for p in points if len(p)])
    xy = xy[np.isfinite(xy).all(axis=1)]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(hi - lo, 0.1 * np.maximum(np.abs(hi), 1.0))
    lo, hi = lo - 0.15 * span, hi + 0.15 * span
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def clip_path(xy: np.ndarray, box) -> tuple[np.ndarray, bool]:
    """The path up to where it first leaves the box, ending on the box's edge; (path, left)."""
    x_lo, x_hi, y_lo, y_hi = box
    with np.errstate(invalid="ignore"):
        inside = (np.isfinite(xy).all(axis=1) & (xy[:, 0] >= x_lo) & (xy[:, 0] <= x_hi)
                  & (xy[:, 1] >= y_lo) & (xy[:, 1] <= y_hi))
    out = np.flatnonzero(~inside)
    if not out.size:
        return xy, False
    i = int(out[0])
    if i == 0 or not np.isfinite(xy[i]).all():
        return xy[:i], True
    a, b = xy[i - 1], xy[i]
    # The largest t in [0, 1] keeping a + t (b - a) inside the box, axis by axis.
    d = b - a
    t = 1.0
    for k, (lo, hi) in enumerate(((x_lo, x_hi), (y_lo, y_hi))):
        if d[k] > 0:
            t = min(t, (hi - a[k]) / d[k])
        elif d[k] < 0:
            t = min(t, (lo - a[k]) / d[k])
    return np.vstack([xy[:i], a + t * d]), True


def draw_contours(ax, loss, box, names: tuple[str, str] = ("x0", "x1")) -> None:
    """Filled contours of a 2-D loss over the box, levels at quantiles of its values.

    Args:
        names: the two parameters' names, for the axis labels.
    """
    x_lo, x_hi, y_lo, y_hi = box
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, CONTOUR_GRID), np.linspace(y_lo, y_hi, CONTOUR_GRID))
    with np.errstate(all="ignore"):
        z = loss.value(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
    finite = z[np.isfinite(z)]
    # Quantile levels follow the landscape's shape, a narrow valley or a wide bowl alike.
    levels = np.unique(np.quantile(finite, np.linspace(0, 1, 16) ** 2)) if finite.size else []
    if len(levels) >= 2:
        ax.contourf(gx, gy, z, levels=levels, cmap="Greys_r", alpha=0.35)
        ax.contour(gx, gy, z, levels=levels, colors="0.45", linewidths=0.5)
    minima = loss.minima()
    if minima is not None:
        ax.plot(minima[:, 0], minima[:, 1], linestyle="none", marker="*", markersize=11,
                color="gold", markeredgecolor="black", zorder=4, label="minimum")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set(xlabel=names[0], ylabel=names[1])


def descent_paths(title: str, loss, runs, paths: dict[str, np.ndarray], box, path,
                  names: tuple[str, str] = ("x0", "x1")) -> Figure:
    """Each run's path on the loss contours; diverged paths dashed, clipped at the edge with an x."""
    norm = lr_norm(runs["lr"])
    fig = new_figure((6.4, 5.4))
    ax = fig.add_subplot()
    draw_contours(ax, loss, box, names)

    def clipped(run):
        xy = paths.get(run.run_id)
        if xy is None:
            return None, None
        shown, left = clip_path(xy, box)
        return shown, (shown[-1] if left and len(shown) else None)

    exits = _draw_runs(ax, runs, norm, clipped, width=1.3)
    starts = np.array([p[0] for p in paths.values()])
    if starts.size:
        ax.plot(*np.unique(starts, axis=0).T, linestyle="none", marker="o", color="black",
                markersize=5, zorder=4, label="start")
    if exits:
        xs, ys = zip(*exits)
        ax.scatter(xs, ys, color="tab:red", marker="x", s=40, zorder=5, label="diverged: left the plot")
    ax.set_title(f"{title}: descent paths")
    fig.legend(loc="outside lower center", ncols=3)
    lr_colorbar(fig, ax, norm)
    save_png(fig, path)
    return fig
