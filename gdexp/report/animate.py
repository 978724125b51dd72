"""Animated GIFs of one run descending on the loss contours, as the seeds show them."""
from __future__ import annotations

import numpy as np
from PIL import Image

from gdexp.report.figures import clip_path, draw_contours, new_figure

FRAMES = 40     # at most: with GIF_SIZE this keeps a GIF under 1 MB
ZOOM_OUT = 30   # the view widens at most this many times the still figure's box
FPS = 8
# 480 x 408 px: the title, ticks and axis names read at the size shown (9-pt text at 96 dpi).
GIF_SIZE, GIF_DPI = (5.0, 4.25), 96


def frame_steps(last_step: int, frames: int = FRAMES) -> np.ndarray:
    """The steps shown: every step of a short run, log-spaced ones of a long run.

    Log spacing shows the fast first moves and still reaches the end.

    >>> frame_steps(5).tolist()
    [0, 1, 2, 3, 4, 5]
    >>> s = frame_steps(10_000); int(s[0]), int(s[-1]), len(s) <= 40
    (0, 10000, True)
    """
    if last_step + 1 <= frames:
        return np.arange(last_step + 1)
    steps = np.unique(np.r_[0, np.geomspace(1, last_step, frames - 1)].round().astype(np.int64))
    return np.unique(np.r_[steps, last_step])


def descent_gif(caption: str, loss, xy: np.ndarray, curve_loss: np.ndarray, color, box, path,
                names: tuple[str, str] = ("x0", "x1")) -> None:
    """A GIF of `xy` (the run's path, every step) drawn step by step on the contours of `loss`.

    Frames are blitted: the contours are drawn once per view, each frame adds
    only the path so far, its head and the title (ten times faster than
    drawing the whole figure per frame). The view is `box`, widened whenever
    the path so far leaves it: a diverging
    run is followed as its bounces grow instead of vanishing off the edge, up
    to ZOOM_OUT times the box; beyond, the path is clipped at the edge (an X).
    Call it inside figures.style().

    Args:
        names: the two parameters' names, for the axis labels.
    """
    limit = _scaled(box, ZOOM_OUT)
    # Fixed margins: constrained layout would be solved again for every frame.
    fig = new_figure(GIF_SIZE, dpi=GIF_DPI, layout=None)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.88)
    canvas, frames, view = fig.canvas, [], None
    for step in frame_steps(len(xy) - 1):
        shown, left = clip_path(xy[: step + 1], limit)
        wider = _cover(box, shown)
        if wider != view:  # the contours are drawn once per view, then each frame only its path
            view = wider
            ax.clear()
            draw_contours(ax, loss, view, names)
            ax.plot(*xy[0], marker="o", color="black", markersize=4, zorder=4)
            (trail,) = ax.plot([], [], color=color, linewidth=1.6, zorder=5, animated=True)
            (head,) = ax.plot([], [], marker="o", color=color, markeredgecolor="black",
                              markersize=6, zorder=6, animated=True)
            ax.set_title("", fontsize=9)
            canvas.draw()
            background = canvas.copy_from_bbox(fig.bbox)
        canvas.restore_region(background)
        trail.set_data(shown[:, 0], shown[:, 1])
        head.set_data(shown[-1:, 0], shown[-1:, 1])
        head.set_marker("X" if left else "o")
        ax.title.set_text(f"{caption}\nstep {step}, loss {curve_loss[step]:.4g}")
        for artist in (trail, head, ax.title):
            ax.draw_artist(artist)
        # As matplotlib's PillowWriter keeps an opaque frame: RGB, which Pillow turns into a GIF palette.
        frames.append(Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(),
                                       "raw", "RGBA", 0, 1).convert("RGB"))
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / FPS),
                   loop=0)


def _scaled(box, factor: float) -> tuple[float, float, float, float]:
    x_lo, x_hi, y_lo, y_hi = box
    cx, cy, rx, ry = (x_lo + x_hi) / 2, (y_lo + y_hi) / 2, (x_hi - x_lo) / 2, (y_hi - y_lo) / 2
    return cx - factor * rx, cx + factor * rx, cy - factor * ry, cy + factor * ry


def _cover(box, xy: np.ndarray) -> tuple[float, float, float, float]:
    """`box`, grown (with a margin) to hold every point of xy."""
    x_lo, x_hi, y_lo, y_hi = box
    if not len(xy):
        return box
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    if lo[0] >= x_lo and hi[0] <= x_hi and lo[1] >= y_lo and hi[1] <= y_hi:
        return box
    lo, hi = np.minimum(lo, (x_lo, y_lo)), np.maximum(hi, (x_hi, y_hi))
    pad = 0.1 * (hi - lo)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
