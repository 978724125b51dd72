"""Search sweeps show their search: lr_find's probes and bracket, lr_optuna's study.

A sweep is recognised by what its parent run carries: lr_find's settings
(`lr_find.*` params) and bracket (`lr_found_lo`, `lr_found_hi`, or
`max_stable_lr` / `min_diverged_lr`); an Optuna sweep's study, stored beside
the MLflow store and named on the parent by the tags `gdexp.optuna.storage`
(an RDB URL) and `gdexp.optuna.study`.
"""
# Kept whole (over ~300 lines): the lr_find and Optuna sections, chosen by what a search's parent run carries.
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize

from gdexp.report import interactive
from gdexp.report.figures import lr_cmap, new_figure, save_png
from gdexp.report.select import TAG, Selection, sweep_name

STORAGE_TAG, STUDY_TAG = f"{TAG}optuna.storage", f"{TAG}optuna.study"
DIVERGED_VALUE = 309.0  # what lr_optuna tells Optuna for a diverged run (its param optuna.diverged_value)


def sections(sel: Selection, urls: dict[str, str], out: Path) -> list[tuple]:
    """The search sections of every sweep of the selection that searched."""
    blocks = []
    for parent in sel.parents:
        p, runs = parent.data.params, sel.runs[sel.runs["sweep_id"] == parent.info.run_id]
        prefix = f"`{sweep_name(parent)}`: " if len(sel.parents) > 1 else ""
        tag = parent.info.run_id[:8]
        if any(k.startswith("lr_find.") for k in p) or "lr_found_lo" in parent.data.metrics:
            blocks += lr_find_section(parent, runs, urls, out, prefix, tag)
        if any(k.startswith("lr_range_test.") for k in p) and sel.range_tests is not None:
            tests = sel.range_tests[sel.range_tests["sweep_id"] == parent.info.run_id]
            blocks += range_test_section(parent, runs, tests, sel.uri, out, prefix, tag)
        if STORAGE_TAG in parent.data.tags or "optuna.n_trials" in p:
            blocks += optuna_section(parent, out, prefix, tag)
    return blocks


def bracket(metrics: dict) -> tuple[float | None, float | None]:
    """(lo, hi) of lr_find's final bracket from the parent's metrics, under either naming.

    >>> bracket({"lr_found_lo": 0.0399, "lr_found_hi": 0.0403})
    (0.0399, 0.0403)
    >>> bracket({"max_stable_lr": 0.0399})
    (0.0399, None)
    """
    lo = metrics.get("lr_found_lo", metrics.get("max_stable_lr"))
    hi = metrics.get("lr_found_hi", metrics.get("min_diverged_lr"))
    return lo, hi


def lr_find_section(parent, runs: pd.DataFrame, urls, out: Path, prefix: str, tag: str) -> list[tuple]:
    """lr_find's probes in the order they ran, and how the bracket closed."""
    probes = runs.sort_values(["start_time", "run_id"], kind="stable").reset_index(drop=True)
    probes.insert(0, "probe", np.arange(1, len(probes) + 1))
    lo, hi = bracket(parent.data.metrics)
    p = parent.data.params
    how = (f"{len(probes)} probes: from `{p.get('lr_find.start', '?')}` up or down by a factor "
           f"`{p.get('lr_find.factor', '?')}` until the outcome flipped, then the geometric mean of the "
           f"bracket (bisection on a log scale) until hi/lo <= 1 + rtol (`{p.get('lr_find.rtol', '?')}`).")
    if lo is not None and hi is not None:
        closed = (f"The bracket closed at lo = {lo:.6g} (stable) and hi = {hi:.6g} (diverged), "
                  f"hi/lo = {hi / lo:.6g}: max_stable_lr = {lo:.6g}.")
    else:
        closed = (f"The search ended without a bracket: lo = {_g(lo)}, hi = {_g(hi)} "
                  "(every probe stable, or every probe diverged, or max_probes ran out).")
    name = f"fig-lr-find-{tag}.png"
    rtol = float(p["lr_find.rtol"]) if "lr_find.rtol" in p else None
    lr_find_png(probes, lo, hi, rtol, out / name)
    probes["bracket"] = bracket_widths(probes)
    rows = [[str(r.probe), f"{r.lr:.12g}", r.status,
             f"diverged at step {r.diverged_step}" if r.diverged else f"{r.final_loss:.6g}",
             "" if pd.isna(r.bracket) else f"{r.bracket:.4g}",
             f"[{r.run_name}]({urls[r.run_id]})" if r.run_id in urls else r.run_name]
            for r in probes.itertuples()]
    return [("h", 2, f"{prefix}lr_find: the probes and the bracket"), ("p", how), ("p", closed),
            ("plot", f"plot-lr-find-{tag}", interactive.lr_find_figure(probes, lo, hi, urls), name,
             "lr_find probes in order"),
            ("table", ["probe", "lr", "status", "final loss", "bracket hi/lo - 1", "run"], rows, {0, 1, 3, 4})]


def bracket_widths(probes: pd.DataFrame) -> pd.Series:
    """hi/lo - 1 after each probe: lo the last stable probe so far, hi the last diverged (NaN before both).

    >>> p = pd.DataFrame({"lr": [0.01, 0.1, 0.0316, 0.0562], "diverged": [False, True, False, True]})
    >>> [round(w, 3) for w in bracket_widths(p).fillna(-1)]
    [-1.0, 9.0, 2.165, 0.778]
    """
    lo = probes["lr"].where(~probes["diverged"]).ffill()
    hi = probes["lr"].where(probes["diverged"]).ffill()
    return hi / lo - 1


def lr_find_png(probes: pd.DataFrame, lo, hi, rtol: float | None, path) -> None:
    """Left: every probe (lr, log scale) and the final bracket. Right: how the bracket closed."""
    fig = new_figure((9.4, 3.9))
    ax, right = fig.subplots(1, 2, width_ratios=[1.3, 1])
    ax.set_yscale("log")
    ax.plot(probes["probe"], probes["lr"], color="0.6", linewidth=1, zorder=1)
    for diverged, kw in ((False, dict(marker="o", color="tab:green", label="stable")),
                         (True, dict(marker="x", color="tab:red", label="diverged"))):
        sub = probes[probes["diverged"] == diverged]
        if len(sub):
            ax.scatter(sub["probe"], sub["lr"], s=40, zorder=3, **kw)
    for value, color, name in ((lo, "tab:green", "lo"), (hi, "tab:red", "hi")):
        if value is not None:
            ax.axhline(value, color=color, linestyle="--", linewidth=1, label=f"final {name} = {value:.6g}")
    ax.set_xticks(probes["probe"])
    ax.set(xlabel="probe", ylabel="learning rate", title="lr_find: every probe, in order")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    widths = bracket_widths(probes)
    known = widths.notna() & (widths > 0)
    right.set_yscale("log")
    right.plot(probes.loc[known, "probe"], widths[known], marker="o", color="tab:purple")
    if rtol:
        right.axhline(rtol, color="black", linestyle=":", linewidth=1, label=f"rtol = {rtol:g}")
        right.legend(loc="best", fontsize=8)
    right.set_xticks(probes["probe"])
    right.set(xlabel="probe", ylabel="hi / lo - 1", title="how the bracket closed")
    right.grid(True, which="major", alpha=0.3)
    save_png(fig, path)


def range_test_section(parent, grid: pd.DataFrame, tests: pd.DataFrame, uri: str, out: Path, prefix: str,
                       tag: str) -> list[tuple]:
    """lr_range_test: each range test's loss against its ramped lr, over the grid's final loss against lr."""
    from gdexp.report.select import load_curve
    from gdexp.results.range_test import ramp_lrs, suggest_lr

    p = parent.data.params
    start, end, steps = float(p["lr_range_test.start_lr"]), float(p["lr_range_test.end_lr"]), \
        int(float(p["lr_range_test.num_steps"]))
    curves = {}
    for run in tests.itertuples():
        try:
            loss = load_curve(run.run_id, uri, run.artifact_uri)["loss"].to_numpy()
        except (FileNotFoundError, OSError):
            continue
        lrs = ramp_lrs(start, end, steps, len(loss))
        curves[run.run_name] = (lrs, loss, suggest_lr(loss, lrs))
    name = f"fig-lr-range-test-{tag}.png"
    range_test_png(grid, curves, out / name)
    m = parent.data.metrics
    ratios = ", ".join(f"{k} = {v:.4g}" for k, v in sorted(m.items())
                       if k.startswith(("suggested_lr", "suggested_to_")))
    text = (f"{len(curves)} range test(s): the rate ramped from {start:g} to {end:g} over {steps} updates, "
            f"stopped once the loss passed {p.get('lr_range_test.threshold', '?')} x its best; the "
            f"suggestion (a dot) is the steepest descent of loss against log lr. Beside it, the grid's "
            f"final loss (markers; x = diverged). {ratios}.")
    return [("h", 2, f"{prefix}lr_range_test: the range test over the grid"), ("p", text),
            ("img", name, "range test loss against lr over the grid's final loss")]


def range_test_png(grid: pd.DataFrame, curves: dict, path) -> None:
    """The grid's final loss against lr (log-log), each range test's loss against its ramped lr over it."""
    fig = new_figure((7.4, 4.4))
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    finite = []
    for label, (lrs, loss, suggested) in curves.items():
        ok = np.isfinite(loss) & (loss > 0)
        line, = ax.plot(lrs[ok], loss[ok], linewidth=1.2, alpha=0.8, label=f"range test {label}")
        finite.append(loss[ok])
        if np.isfinite(suggested):
            at = int(np.argmin(np.abs(lrs - suggested)))
            ax.scatter([suggested], [loss[at]], color=line.get_color(), s=30, zorder=4)
    from gdexp.results.groups import GROUP, with_groups

    grid = with_groups(grid) if len(grid) else grid.assign(**{GROUP: []})
    for group, part in grid.groupby(GROUP, observed=True, sort=True):
        part = part.sort_values("lr")
        stable = part[~part["diverged"].astype(bool) & (part["final_loss"] > 0)]
        ax.plot(stable["lr"], stable["final_loss"], marker="o", linestyle="--", linewidth=1,
                label=f"grid: final loss ({group})")
        finite.append(stable["final_loss"].to_numpy())
        bad = part[part["diverged"].astype(bool)]
        if len(bad):
            top = np.nanmax(np.concatenate(finite)) if finite else 1.0
            ax.scatter(bad["lr"], np.full(len(bad), top), marker="x", color="tab:red", zorder=3)
    ax.set(xlabel="learning rate", ylabel="loss", title="range test (loss against its ramped lr) over the grid")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    save_png(fig, path)


def optuna_section(parent, out: Path, prefix: str, tag: str) -> list[tuple]:
    """The study's optimization history; for several searched keys, parallel coordinates and importances."""
    head = [("h", 2, f"{prefix}Optuna: the search")]
    storage, name = parent.data.tags.get(STORAGE_TAG), parent.data.tags.get(STUDY_TAG)
    if not storage:
        return head + [("p", "This sweep's Optuna study was not stored (a sweep made before gdexp kept "
                             "its studies): no history to draw.")]
    try:
        study = load_study(storage, name)
    except Exception as exc:  # moved or deleted since: say so, draw the rest of the report
        return head + [("p", f"The study `{name}` could not be read from `{storage}` "
                             f"({type(exc).__name__}: {exc}).")]
    diverged_value = float(parent.data.params.get("optuna.diverged_value", DIVERGED_VALUE))
    # What the study minimized (gdexp.hydra.sweepers.optuna.objective); sweeps before it was a param: log10(final_loss).
    target = parent.data.params.get("optuna.objective", "log10(final_loss)")
    trials = trial_table(study, diverged_value)
    blocks = head + [("p", f"Study `{name}` in `{storage}` ({len(trials)} trials; open it with "
                           f"`optuna-dashboard {storage}`). The objective is {target}; a run that "
                           f"diverged is told as {diverged_value:g}, worse than any other value, and is drawn "
                           "in the band above the history.")]
    png = f"fig-optuna-history-{tag}.png"
    history_png(trials, out / png, target)
    blocks.append(("plot", f"plot-optuna-history-{tag}", history_figure(trials, target), png,
                   "Optuna optimization history"))
    keys = sorted({k for t in study.trials for k in t.params})
    if len(keys) < 2:
        blocks.append(("p", f"One searched key (`{keys[0] if keys else '?'}`): no parallel coordinates or "
                            "importances to draw."))
        return blocks
    finite = _finite_study(study, diverged_value)
    if len(finite.trials) < 2:
        return blocks + [("p", "Fewer than two trials that did not diverge: no parallel coordinates "
                               "or importances.")]
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.visualization import plot_parallel_coordinate, plot_param_importances

    evaluator = FanovaImportanceEvaluator(seed=0)  # seeded: the same bars at every rebuild
    importances = get_param_importances(finite, evaluator=evaluator)
    blocks.append(("p", "Trials that did not diverge, each a line through its value of every searched key "
                        f"(colour: {target}), and how much of the objective's variance each key "
                        "explains (fANOVA, seed 0)."))
    png = f"fig-optuna-parallel-{tag}.png"
    parallel_png(trials[~trials["diverged"]], keys, _log_keys(study), out / png, target)
    blocks.append(("plot", f"plot-optuna-parallel-{tag}", _figure_dict(plot_parallel_coordinate(
        finite, target_name=target)), png, "Optuna parallel coordinates"))
    png = f"fig-optuna-importance-{tag}.png"
    importance_png(importances, out / png)
    blocks.append(("plot", f"plot-optuna-importance-{tag}", _figure_dict(plot_param_importances(
        finite, evaluator=FanovaImportanceEvaluator(seed=0), target_name=target)), png,
                   "Optuna parameter importances"))
    return blocks


def load_study(storage: str, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)


def trial_table(study, diverged_value: float) -> pd.DataFrame:
    """One row per finished trial: number, value, diverged, best so far, params (as columns)."""
    from optuna.trial import TrialState

    rows = [{"trial": t.number, "value": t.value, "diverged": t.value >= diverged_value, **t.params}
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    table = pd.DataFrame(rows, columns=["trial", "value", "diverged"] if not rows else None)
    finite = table["value"].where(~table["diverged"])
    table["best"] = finite.cummin().ffill()  # a diverged trial keeps the best so far
    return table


def history_figure(trials: pd.DataFrame, target: str = "log10(final_loss)") -> dict:
    ok, bad = trials[~trials["diverged"]], trials[trials["diverged"]]
    params = [c for c in trials.columns if c not in ("trial", "value", "diverged", "best")]

    def hover(t):
        return "<br>".join([f"trial {int(t['trial'])}", f"{target}: "
                            + ("diverged" if t["diverged"] else f"{t['value']:.6g}")]
                           + [f"{k}: {t[k]}" for k in params])

    data = [{"type": "scatter", "mode": "markers", "name": "trial", "x": ok["trial"].tolist(),
             "y": ok["value"].tolist(), "marker": {"color": "#1f77b4", "size": 8},
             "hovertext": [hover(t) for _, t in ok.iterrows()], "hoverinfo": "text"},
            {"type": "scatter", "mode": "lines", "name": "best so far", "x": trials["trial"].tolist(),
             "y": [None if pd.isna(v) else v for v in trials["best"]], "line": {"color": "#d62728", "shape": "hv"},
             "hoverinfo": "skip"},
            {"type": "scatter", "mode": "markers", "name": "diverged", "x": bad["trial"].tolist(),
             "y": [0] * len(bad), "yaxis": "y2", "marker": {"symbol": "x", "color": "#d62728", "size": 9},
             "hovertext": [hover(t) for _, t in bad.iterrows()], "hoverinfo": "text"}]
    layout = {"title": {"text": "Optuna: optimization history"}, "height": 460, "hovermode": "closest",
              "xaxis": {"title": {"text": "trial"}},
              "yaxis": {"title": {"text": target}, "domain": [0, 0.85]},
              "yaxis2": {"domain": [0.89, 1], "showticklabels": False, "showgrid": False, "zeroline": False,
                         "title": {"text": "diverged"}, "fixedrange": True, "range": [-1, 1]},
              "shapes": [{"type": "rect", "xref": "paper", "yref": "y2 domain", "x0": 0, "x1": 1, "y0": 0,
                          "y1": 1, "fillcolor": "#f7eeee", "line": {"width": 0}, "layer": "below"}]}
    return {"data": data, "layout": layout, "config": interactive.CONFIG}


def history_png(trials: pd.DataFrame, path, target: str = "log10(final_loss)") -> None:
    fig = new_figure((7.0, 4.2))
    band, ax = fig.subplots(2, 1, sharex=True, height_ratios=[0.5, 4])
    ok, bad = trials[~trials["diverged"]], trials[trials["diverged"]]
    ax.scatter(ok["trial"], ok["value"], s=18, color="tab:blue", label="trial", zorder=3)
    ax.step(trials["trial"], trials["best"], where="post", color="tab:red", label="best so far")
    band.scatter(bad["trial"], np.zeros(len(bad)), marker="x", color="tab:red", s=30)
    band.set_ylim(-1, 1)
    band.set_yticks([])
    band.set_facecolor("#f7eeee")
    band.set_ylabel("diverged", rotation=0, ha="right", va="center", fontsize=8)
    band.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
    band.set_title("Optuna: optimization history")
    ax.set(xlabel="trial", ylabel=target)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save_png(fig, path)


def parallel_png(trials: pd.DataFrame, keys: list[str], log_keys: set[str], path, target: str = "log10(final_loss)") -> None:
    """Each trial a line across one vertical axis per key (scaled to its range; log where searched so)."""
    fig = new_figure((7.6, 4.2))
    ax = fig.add_subplot()
    columns = []
    for key in keys:
        raw = trials[key]
        if pd.api.types.is_numeric_dtype(raw):
            v = np.log10(raw.astype(float)) if key in log_keys else raw.astype(float)
            lo, hi = float(v.min()), float(v.max())
            columns.append(((v - lo) / (hi - lo) if hi > lo else v * 0 + 0.5, raw.min(), raw.max()))
        else:  # a choice: its values spread evenly
            levels = sorted(raw.astype(str).unique())
            idx = raw.astype(str).map({c: i for i, c in enumerate(levels)})
            columns.append((idx / max(len(levels) - 1, 1), levels[0], levels[-1]))
    values = trials["value"].to_numpy(float)
    lo, hi = float(values.min()), float(values.max())
    cmap = lr_cmap()
    for i in np.argsort(-values, kind="stable"):  # the best drawn last, on top
        ax.plot(range(len(keys)), [c[0].iloc[i] for c in columns],
                color=cmap((values[i] - lo) / (hi - lo) if hi > lo else 0.5), linewidth=1.1, alpha=0.8)
    for j, (_, low, high) in enumerate(columns):
        ax.axvline(j, color="black", linewidth=0.8)
        ax.annotate(_short(high), (j, 1.0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7)
        ax.annotate(_short(low), (j, 0.0), xytext=(0, -10), textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(range(len(keys)), [k + (" (log)" if k in log_keys else "") for k in keys])
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    ax.spines[:].set_visible(False)
    ax.set_title("Optuna: parallel coordinates (trials that did not diverge)")
    fig.colorbar(mpl.cm.ScalarMappable(norm=Normalize(lo, hi), cmap=cmap), ax=ax, label=target)
    save_png(fig, path)


def importance_png(importances: dict[str, float], path) -> None:
    fig = new_figure((6.0, 0.9 + 0.4 * len(importances)))
    ax = fig.add_subplot()
    keys = list(importances)[::-1]
    ax.barh(keys, [importances[k] for k in keys], color="tab:blue")
    for y, k in enumerate(keys):
        ax.annotate(f"{importances[k]:.2f}", (importances[k], y), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set(xlabel="importance (fANOVA, seed 0)", title="Optuna: parameter importances")
    ax.set_xlim(0, 1.1 * max(importances.values(), default=1))
    save_png(fig, path)


def _finite_study(study, diverged_value: float):
    """An in-memory copy of the study without its diverged trials (value 309 would flatten the rest)."""
    import optuna
    from optuna.trial import TrialState

    copy = optuna.create_study(direction=study.direction)
    copy.add_trials([t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if t.value < diverged_value])
    return copy


def _log_keys(study) -> set[str]:
    return {k for t in study.trials for k, d in t.distributions.items() if getattr(d, "log", False)}


def _figure_dict(figure) -> dict:
    """A plotly Figure as the dict report.html embeds (what plotly.io.to_json writes)."""
    out = json.loads(figure.to_json())
    out["config"] = interactive.CONFIG
    return out


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float, np.number)) else str(value)


def _g(value) -> str:
    return "none" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"
