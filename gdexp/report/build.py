"""A report folder from a selection of runs: figures, report.md and report.html."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gdexp.core.outcomes import STABLE
from gdexp.report import UI_URL, batch_size, figures, interactive, render, search, sections, sharpness
from gdexp.report.animate import descent_gif
from gdexp.report.overlay import BOUNDS, bound_label, overlay, overlay_png
from gdexp.report.select import (Group, Selection, grouped, loss_of, read_curves, run_url,
                                 searched_keys, slug)
from gdexp.results.groups import GROUP, answers, monitor
from gdexp.results.ties import group_differences, rtol_of_runs

# Figure files are named so; stale ones from an earlier build of the folder are removed.
_OWN = ("fig-*.png", "anim-*.gif")
OVERLAY_PNG = "fig-overlay.png"


def build_report(sel: Selection, out: Path, ui: str = UI_URL) -> list[Path]:
    """Write the report of `sel` into `out`; returns the files written.

    Args:
        ui: the MLflow UI's address, for the links to each run
            (`<ui>/#/experiments/<id>/runs/<run id>`).
    """
    out.mkdir(parents=True, exist_ok=True)
    for pattern in _OWN:
        for old in out.glob(pattern):
            old.unlink()
    runs, keys = grouped(sel)
    metric, mode = monitor(runs)
    answer = answers(runs, metric, mode, rtol_of_runs(runs))
    answer["lr_max"] = answer[GROUP].map(runs.groupby(GROUP, observed=True)["lr"].max()).astype(float)
    urls = {r.run_id: run_url(ui, r.experiment_id, r.run_id) for r in runs.itertuples()
            if isinstance(r.experiment_id, str)}
    repeats = bool(len(answer)) and int(answer["repeats"].max()) > 1
    blocks = sections.overview(sel, answer, keys, metric, mode, repeats)
    with figures.style():
        blocks += _overlay_section(runs, answer, keys, metric, mode, urls, out, sel.by == "sweeps",
                                   searched_keys(sel.parents))
        blocks += batch_size.section(runs, answer, keys, metric, lambda run: _data_points(sel, run), out)
        if sel.by == "sweeps":
            blocks += sections.comparison(sel, answer, keys)
        blocks += sections.differences(group_differences(runs, answer, metric), metric, mode)
        blocks += search.sections(sel, urls, out)
        parts = _curve_groups(sel, runs)
        blocks += _curve_section(parts, urls, out) + sharpness.section(parts, urls, out)
        blocks += _contour_section(sel, parts, out)
    blocks += sections.runs_table(runs, keys, metric, urls, by_sweep=sel.by == "sweeps")
    blocks += sections.provenance(sel, runs) + sections.reproduce(sel)
    (out / "report.md").write_text(render.to_markdown(blocks))
    (out / "report.html").write_text(render.to_html(blocks, f"gdexp report: {sel.name}", out))
    figs = [out / b[1] for b in blocks if b[0] == "img"] + [out / b[3] for b in blocks if b[0] == "plot" and b[3]]
    return [out / "report.md", out / "report.html", *figs]


def overlay_title(keys: list[str], metric: str, groups: list[str], by_sweep: bool) -> str:
    """'final loss against learning rate, by optimizer' (or ': <the group>' for a single one)."""
    what = f"{metric.replace('_', ' ')} against learning rate"
    if len(groups) == 1:
        return f"{what}: {groups[0]}"
    names = (["sweep"] if by_sweep else []) + [k[:-5] if k.endswith(".name") and k.count(".") == 1 else k
                                               for k in keys]
    return f"{what}, by {', '.join(names)}"


def _overlay_section(runs, answer, keys, metric, mode, urls, out: Path, by_sweep: bool,
                     searched: list[str]) -> list[tuple]:
    ov = overlay(runs, answer, metric, mode, tuple(searched))
    title = overlay_title(keys, metric, [s.label for s in ov.series], by_sweep)
    overlay_png(ov, title, out / OVERLAY_PNG)
    axes = "both axes log" if ov.log_y else f"the learning rate on a log axis, {metric.replace('_', ' ')} on a linear one"
    text = (f"Each group's {metric.replace('_', ' ')} against the learning rate, {axes} "
            f"(one colour per group; the star is its best_lr). Runs that diverged are not drawn at their "
            f"last finite loss: they are the x in the shaded band above the plot, in their group's row, "
            f"beside the step they diverged at.")
    if ov.searched:
        text += (f" The search sampled {', '.join(f'`{k}`' for k in ov.searched)} too, so neighbouring "
                 "points differ in those as well: they are not joined (hover a point for its values).")
    if ov.repeats:
        text += (" With repeats over seeds the line is the mean over the seeds that did not diverge, the "
                 "shaded band their min-max, the small dots the seeds; a hollow marker says some seeds "
                 "diverged there.")
    blocks = [("h", 2, "Which learning rate, for each group"), ("p", text),
              ("plot", "plot-overlay", interactive.overlay_figure(ov, title, urls), OVERLAY_PNG, title),
              ("p", "In report.html: hover a point for its run, click it to open the run in the MLflow UI, "
                    "click a legend entry to hide or show a group, drag to zoom (double-click resets).")]
    drawn = [f"`{s.label}`: " + ", ".join(f"`{b} = {v:.6g}`" for b in BOUNDS for v in s.bounds.get(b, []))
             for s in ov.series if s.bounds]
    if drawn:
        blocks.append(("p", "Closed-form bounds drawn (constant Hessian: quadratic, linear regression), each "
                            "group's own optimizer's (\u03bb shifted by weight_decay): the stability limit "
                            f"`{bound_label(ov, 'lr_max_stable')}` (dashed) and the fastest rate "
                            f"`{bound_label(ov, 'lr_optimal')}` (dotted); black where every group has the same. "
                            "Adam, RMSprop and Adagrad have none: no learning rate bounds their stability."))
        blocks.append(("ul", drawn))
    else:
        blocks.append(("p", "No closed-form learning-rate bound for these losses: no vertical line drawn."))
    return blocks


def _data_points(sel: Selection, run) -> int | None:
    """The points a full batch of the run's loss holds (its n_data), or None if it cannot be rebuilt."""
    try:
        return getattr(loss_of(sel, run), "n_data", None)
    except Exception:  # a data file moved, a module not allowed: the full batch is left out
        return None


def _curve_groups(sel: Selection, runs: pd.DataFrame) -> list[Group]:
    finished = runs[runs["mlflow_status"] == "FINISHED"]
    parts, slugs = [], set()
    for group, part in finished.groupby(GROUP, observed=True, sort=True):
        name, n = slug(str(group)), 2
        base = name
        while name in slugs:
            name, n = f"{base}-{n}", n + 1
        slugs.add(name)
        parts.append(read_curves(sel, part, str(group), name))
    return parts


def _curve_section(parts: list[Group], urls: dict[str, str], out: Path) -> list[tuple]:
    blocks = [("h", 2, "Loss curves"),
              ("p", "Loss at every step, read from each run's `curve.parquet` (not MLflow's sampled metric), "
                    "log scale; colour = learning rate, each curve that did not diverge labelled with its "
                    "learning rate at the right edge. Where runs end early (blown up in a few steps) the "
                    "step axis is logarithmic past step 1. A diverged run's curve is dashed and ends with "
                    "an x at the step it diverged at. In report.html: hover a curve for its run, click to "
                    "open it in the MLflow UI; the HTML curves are drawn at up to "
                    f"{interactive.HOVER_STEPS} log-spaced steps, the PNGs at every step.")]
    for g in parts:
        name = f"fig-{g.slug}-loss.png"
        figures.loss_curves(g.title, g.runs, g.losses, out / name)
        steps = sum(len(v) for v in g.losses.values())
        norm, cmap = figures.lr_norm(g.runs["lr"]), figures.lr_cmap()
        colors = {r.run_id: interactive.hex_color(cmap(norm(r.lr))) for r in g.runs.itertuples()}
        ylim = figures.y_limits(g.losses, set(g.runs.loc[g.runs["diverged"], "run_id"]))
        fig = interactive.curves_figure(g.title, g.runs, g.losses, ylim, colors, urls)
        blocks += [("h", 3, g.title), ("plot", f"plot-{g.slug}-loss", fig, name, f"Loss curves, {g.title}"),
                   ("p", f"{len(g.losses)} curves, {steps} points in all.")]
        if g.missing:
            blocks.append(("p", f"No curve.parquet, so no curve, for: {', '.join(g.missing)}."))
    return blocks


def _contour_section(sel: Selection, parts: list[Group], out: Path) -> list[tuple]:
    blocks = [("h", 2, "Descent on the loss contours")]
    flat = [g for g in parts if g.paths]
    if not flat:
        return blocks + [("p", "No two-dimensional loss among these runs: nothing to draw on contours.")]
    blocks.append(("p", "Each run's path through parameter space on the contours of its loss "
                        "(colour = learning rate, black dot = start, star = minimum). Diverged paths "
                        "are dashed and clipped where they leave the plot (x). The animations show "
                        "the best run and the smallest learning rate that diverged, step by step "
                        "(log-spaced steps for long runs)."))
    for g in flat:
        blocks.append(("h", 3, g.title))
        try:
            loss = loss_of(sel, g.runs.iloc[0])
        except Exception as exc:  # a data file moved since: say so, draw the rest
            blocks.append(("p", f"No contour plot: the loss could not be rebuilt from the run's "
                                f"config.yaml ({type(exc).__name__}: {exc})."))
            continue
        runs = g.runs[g.runs["run_id"].isin(g.paths)]
        box = figures.plot_box([g.paths[r] for r in runs["run_id"]], list(runs["diverged"]), loss.minima())
        name = f"fig-{g.slug}-paths.png"
        figures.descent_paths(g.title, loss, runs, g.paths, box, out / name, g.coords)
        blocks.append(("img", name, f"Descent paths on the contours, {g.title}"))
        blocks += _animations(g, runs, loss, box, out)
    return blocks


def _animations(g: Group, runs, loss, box, out: Path) -> list[tuple]:
    norm, cmap = figures.lr_norm(runs["lr"]), figures.lr_cmap()
    ok = runs[runs["status"].isin(STABLE)].sort_values(["final_loss", "lr"], kind="stable")
    diverged = runs[runs["diverged"]].sort_values(["lr", "run_id"], kind="stable")
    blocks = []
    for kind, chosen, missing in (("best", ok, "Every run diverged: no best run to animate."),
                                  ("diverged", diverged, "No run diverged.")):
        if chosen.empty:
            blocks.append(("p", missing))
            continue
        run = chosen.iloc[0]
        if kind == "best":
            text = (f"Best run: `{run.run_name}`, lr {run.lr:g}, {run.status}, "
                    f"final loss {run.final_loss:.6g} after {run.iterations} steps.")
        else:
            text = (f"Smallest learning rate that diverged: `{run.run_name}`, lr {run.lr:g}, "
                    f"diverged ({run.divergence}) at step {run.diverged_step}.")
        name = f"anim-{g.slug}-{kind}.gif"
        descent_gif(f"{run.run_name}", loss, g.paths[run.run_id], g.losses[run.run_id],
                    cmap(norm(run.lr)), box, out / name, g.coords)
        blocks += [("p", text), ("img", name, f"Animation: {kind} run")]
    return blocks
