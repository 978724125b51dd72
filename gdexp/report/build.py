"""A report folder from a selection of runs: figures, report.md and report.html."""
from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

from gdexp.core.legacy import upgrade
from gdexp.core.spec import plan
from gdexp.report import figures, render, sections
from gdexp.report.animate import descent_gif
from gdexp.report.select import Group, Selection, groups, run_config

BOUNDS = ("lr_max_stable", "lr_optimal")
_OK = ("converged", "max_iters")
# Figure files are named so; stale ones from an earlier build of the folder are removed.
_OWN = ("fig-*.png", "anim-*.gif")


def build_report(sel: Selection, out: Path) -> list[Path]:
    """Write the report of `sel` into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    for pattern in _OWN:
        for old in out.glob(pattern):
            old.unlink()
    parts = groups(sel)
    blocks = sections.overview(sel) + sections.runs_table(sel.runs)
    with figures.style():
        blocks += _curve_sections(parts, out) + _contour_section(sel, parts, out)
    blocks += sections.provenance(sel) + sections.reproduce(sel)
    (out / "report.md").write_text(render.to_markdown(blocks))
    (out / "report.html").write_text(render.to_html(blocks, f"gdexp report: {sel.name}", out))
    figs = [out / b[1] for b in blocks if b[0] == "img"]
    return [out / "report.md", out / "report.html", *figs]


def _curve_sections(parts: list[Group], out: Path) -> list[tuple]:
    curves = [("h", 2, "Loss curves"),
              ("p", "Loss at every step, read from each run's `curve.parquet` (not MLflow's sampled "
                    "metric), log scale; colour = learning rate on a log scale. Diverged runs are "
                    "dashed and end at their divergence step, their last finite loss marked x.")]
    finals = [("h", 2, "Final loss against learning rate"),
              ("p", "Both axes log. Diverged runs are red x at their last finite loss. Where the loss "
                    "has a closed-form bound (a constant Hessian: quadratic, linear regression), the "
                    "vertical lines are plain gradient descent's stability limit "
                    "`lr_max_stable` = 2/\u03bb_max and fastest rate `lr_optimal` = 2/(\u03bb_min+\u03bb_max).")]
    for g in parts:
        name = f"fig-{g.slug}-loss.png"
        figures.loss_curves(g.title, g.runs, g.losses, out / name)
        steps = sum(len(v) for v in g.losses.values())
        curves += [("h", 3, g.title), ("img", name, f"Loss curves, {g.title}"),
                   ("p", f"{len(g.losses)} curves, {steps} points in all.")]
        if g.missing:
            curves.append(("p", f"No curve.parquet, so no curve, for: {', '.join(g.missing)}."))
        bounds = {b: sorted(set(g.runs[b].dropna())) for b in BOUNDS}
        name = f"fig-{g.slug}-final-vs-lr.png"
        figures.final_vs_lr(g.title, g.runs, bounds, out / name)
        finals += [("h", 3, g.title), ("img", name, f"Final loss against learning rate, {g.title}")]
        if any(bounds.values()):
            drawn = ", ".join(f"`{b} = {v:.6g}`" for b, vs in bounds.items() for v in vs)
            finals.append(("p", f"Lines drawn: {drawn}."))
        else:
            finals.append(("p", "No closed-form learning-rate bound for this loss: no lines drawn."))
    return curves + finals


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
            loss = plan(upgrade(run_config(sel, g.runs.iloc[0]))).loss
        except Exception as exc:  # a data file moved since: say so, draw the rest
            blocks.append(("p", f"No contour plot: the loss could not be rebuilt from the run's "
                                f"config.yaml ({type(exc).__name__}: {exc})."))
            continue
        runs = g.runs[g.runs["run_id"].isin(g.paths)]
        box = figures.plot_box([g.paths[r] for r in runs["run_id"]], list(runs["diverged"]), loss.minima())
        name = f"fig-{g.slug}-paths.png"
        figures.descent_paths(g.title, loss, runs, g.paths, box, out / name)
        blocks.append(("img", name, f"Descent paths on the contours, {g.title}"))
        blocks += _animations(g, runs, loss, box, out)
    return blocks


def _animations(g: Group, runs, loss, box, out: Path) -> list[tuple]:
    norm, cmap = figures.lr_norm(runs["lr"]), mpl.colormaps[figures.CMAP]
    ok = runs[runs["status"].isin(_OK)].sort_values(["final_loss", "lr"], kind="stable")
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
                    cmap(norm(run.lr)), box, out / name)
        blocks += [("p", text), ("img", name, f"Animation: {kind} run")]
    return blocks
