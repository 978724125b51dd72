"""Reports of search sweeps (lr_find, lr_optuna) and of seeds as repeats, on one real store."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from cli_runner import run_cli, store_in
from gdexp.commands.report import main as report
from report_pages import table, plots

# 3-D (no contours, no GIFs: fast), lambda_max = 50: GD is stable below 2/50 = 0.04.
LOSS = ("loss=quadratic", "loss.eigenvalues=[3.0,7.0,50.0]")
LR_FIND = ("+sweep=lr_find", *LOSS, "stopping.maxiter=300")
OPTUNA = ("+sweep=lr_optuna", *LOSS, "optimizer=momentum", "optimizer.momentum=interval(0.5,0.99)",
          "stopping.maxiter=100", "hydra.sweeper.n_trials=8", "hydra.sweeper.batch_size=4")
SEEDS = ("-m", *LOSS, "seed=0,1,2", "optimizer.lr=0.01,0.03,0.05", "stopping.maxiter=100")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The three sweeps in one store, each with its report."""
    folder = tmp_path_factory.mktemp("search")
    with store_in(folder) as uri:
        cl = MlflowClient(uri)
        out = {}
        for name, args in (("lr_find", LR_FIND), ("optuna", OPTUNA), ("seeds", SEEDS)):
            assert run_cli(*args) == 0
            parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'", order_by=["attributes.start_time DESC"],
                                    max_results=1)[0]
            assert report(["--sweep", parent.info.run_id, "--out", str(folder / name)]) == 0
            children = cl.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
            out[name] = SimpleNamespace(parent=parent, children=children, out=folder / name,
                                        md=(folder / name / "report.md").read_text(),
                                        html=(folder / name / "report.html").read_text())
        yield SimpleNamespace(uri=uri, folder=folder, cl=cl, **out)


def test_lr_find_shows_its_probes_in_order_and_the_bracket(store):
    s = store.lr_find
    m, tag = s.parent.data.metrics, s.parent.info.run_id[:8]
    probes = sorted(s.children, key=lambda r: r.info.start_time)
    assert len(probes) == int(m["probes"])
    assert (f"The bracket closed at lo = {m['max_stable_lr']:.6g} (stable) and hi = {m['min_diverged_lr']:.6g} "
            f"(diverged), hi/lo = {m['min_diverged_lr'] / m['max_stable_lr']:.6g}") in s.md
    rows = table(s.md, "## lr_find")
    assert [float(r["lr"]) for r in rows] == [float(p.data.params["optimizer.lr"]) for p in probes]
    assert [r["status"] for r in rows] == [p.data.tags["gdexp.status"] for p in probes]
    fig = plots(s.html)[f"plot-lr-find-{tag}"]
    stable, diverged = fig["data"][0], fig["data"][1]
    lr_of = {i + 1: float(p.data.params["optimizer.lr"]) for i, p in enumerate(probes)}
    assert stable["x"] + diverged["x"] and sorted(stable["x"] + diverged["x"]) == list(lr_of)
    assert all(p.data.tags["gdexp.status"] != "diverged" for p in (probes[x - 1] for x in stable["x"]))
    assert all(probes[x - 1].data.tags["gdexp.status"] == "diverged" for x in diverged["x"])
    assert [lr_of[x] for x in stable["x"]] == stable["y"]
    widths = fig["data"][-1]
    assert widths["name"] == "bracket hi/lo - 1"
    assert widths["y"][-1] == pytest.approx(m["min_diverged_lr"] / m["max_stable_lr"] - 1, rel=1e-9)
    assert widths["y"][-1] <= float(s.parent.data.params["lr_find.rtol"])
    assert (s.out / f"fig-lr-find-{tag}.png").stat().st_size > 10_000


def test_optuna_keeps_its_study_beside_the_store_named_on_the_parent(store):
    import optuna

    t = store.optuna.parent.data.tags
    assert t["gdexp.optuna.storage"] == f"sqlite:///{store.folder / 'optuna.db'}"
    assert t["gdexp.optuna.study"] == store.optuna.parent.info.run_id
    study = optuna.load_study(study_name=t["gdexp.optuna.study"], storage=t["gdexp.optuna.storage"])
    values = {int(r.data.tags["gdexp.optuna.trial"]): r.data.metrics["optuna_value"] for r in store.optuna.children}
    assert {trial.number: trial.value for trial in study.trials} == values
    assert {k for trial in study.trials for k in trial.params} == {"optimizer.lr", "optimizer.momentum"}


def test_optuna_report_draws_history_parallel_coordinates_and_importances(store):
    s, tag = store.optuna, store.optuna.parent.info.run_id[:8]
    figs = plots(s.html)
    history = figs[f"plot-optuna-history-{tag}"]
    trials = {int(r.data.tags["gdexp.optuna.trial"]): r for r in s.children}
    finite = {n: r.data.metrics["optuna_value"] for n, r in trials.items() if r.data.tags["gdexp.status"] != "diverged"}
    points, best, band = history["data"]
    assert dict(zip(points["x"], points["y"])) == pytest.approx(finite)
    assert sorted(band["x"]) == sorted(set(trials) - set(finite)) and band["yaxis"] == "y2"
    assert min(v for v in best["y"] if v is not None) == pytest.approx(min(finite.values()))
    parallel = figs[f"plot-optuna-parallel-{tag}"]
    # named by what the study minimized (the parent's optuna.objective param)
    assert parallel["layout"]["xaxis"]["ticktext"] == ["log10(final_loss)", "optimizer.lr", "optimizer.momentum"]
    assert history["layout"]["yaxis"]["title"]["text"] == "log10(final_loss)"
    assert sum(t["mode"] == "lines" for t in parallel["data"]) == len(finite)  # a line per finite trial
    importance = figs[f"plot-optuna-importance-{tag}"]
    assert sorted(importance["data"][0]["y"]) == ["optimizer.lr", "optimizer.momentum"]
    for kind in ("history", "parallel", "importance"):
        assert (s.out / f"fig-optuna-{kind}-{tag}.png").stat().st_size > 10_000
    # The searched momentum varies per trial: the runs are one group, not eight, each point hovering its value.
    assert "one group" in s.md[: s.md.index("## ")]
    (series,) = [t for t in figs["plot-overlay"]["data"] if t.get("legendgroup") and t.get("showlegend", True)
                 and t["mode"] in ("markers", "lines+markers")]
    assert series["mode"] == "markers" and all("optimizer.momentum: " in h for h in series["hovertext"])


def test_an_optuna_report_rebuilds_to_the_same_bytes(store):
    again = store.folder / "optuna-again"
    assert report(["--sweep", store.optuna.parent.info.run_id, "--out", str(again)]) == 0
    for path in sorted(store.optuna.out.iterdir()):
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


def test_seeds_are_repeats_mean_and_band(store):
    s = store.seeds
    head = s.md[: s.md.index("## ")]
    assert "9 runs, 3 diverged, 0 failed; one group, each learning rate repeated over `seed`." in head
    assert "best_lr=0.03 (mean final loss" in head and "max_stable_lr=0.03, min_diverged_lr=0.05" in head
    assert "(the mean over seeds)" in head and "(no seed diverged)" in head
    fig = plots(s.html)["plot-overlay"]
    traces = {t["name"]: t for t in fig["data"]}
    label = next(t["name"] for t in fig["data"] if t["mode"] == "lines+markers")
    mean, band, dots = traces[label], traces[f"{label}: min-max over seeds"], traces[f"{label}: seeds"]
    assert mean["x"] == [0.01, 0.03, 0.05] and mean["y"][2] is None
    losses = {lr: [r.data.metrics["final_loss"] for r in s.children if float(r.data.params["optimizer.lr"]) == lr]
              for lr in (0.01, 0.03)}
    assert mean["y"][:2] == pytest.approx([np.mean(losses[0.01]), np.mean(losses[0.03])], rel=1e-12)
    assert band["fill"] == "toself" and len(band["x"]) == 4
    assert sorted(dots["x"]) == [0.01] * 3 + [0.03] * 3 and all("seed " in h for h in dots["hovertext"])
    assert "mean" in mean["hovertext"][0] and "3 of 3 runs did not diverge" in mean["hovertext"][0]
    (diverged,) = [t for t in fig["data"] if t.get("yaxis") == "y2"]
    steps = {r.data.tags["gdexp.diverged_step"] for r in s.children if r.data.tags["gdexp.status"] == "diverged"}
    step = steps.pop() if len(steps) == 1 else None
    assert diverged["x"] == [0.05]
    assert f"diverged 3/3 (step {step})" in diverged["hovertext"][0] if step else "diverged 3/3 (steps" in \
        diverged["hovertext"][0]
    assert list(table(s.md, "## Runs")[0])[2] == "seed"


def test_partly_diverged_seeds_show_hollow_and_count(tmp_path):
    """A learning rate where one seed of three diverged: drawn hollow, its band marker says 1/3."""
    from gdexp.report.figures import style
    from gdexp.report.interactive import overlay_figure
    from gdexp.report.overlay import overlay, overlay_png
    from gdexp.results.groups import answers, with_groups

    runs = pd.DataFrame({
        "run_id": list("abcdef"), "run_name": [f"r{i}" for i in range(6)], "seed": [0, 1, 2] * 2,
        "lr": [0.1] * 3 + [1.0] * 3, "optimizer.lr": [0.1] * 3 + [1.0] * 3,
        "status": ["converged"] * 4 + ["diverged", "converged"], "diverged": [False] * 4 + [True, False],
        "diverged_step": [None] * 4 + [7, None], "final_loss": [1.0, 2.0, 6.0, 0.1, 2.6e13, 0.3],
        "loss.name": "quadratic", "optimizer.name": "gd"})
    runs = with_groups(runs)
    ov = overlay(runs, answers(runs), "final_loss", "min")
    fig = overlay_figure(ov, "t", {r: f"http://ui/#/experiments/1/runs/{r}" for r in runs["run_id"]})
    mean = fig["data"][0]
    assert mean["marker"]["symbol"] == ["circle", "circle-open"]
    assert mean["y"] == pytest.approx([3.0, 0.2])
    band = next(t for t in fig["data"] if t.get("yaxis") == "y2")
    assert "diverged 1/3 (step 7)" in band["hovertext"][0] and band["text"] == ["7"]
    assert band["customdata"] == ["http://ui/#/experiments/1/runs/e"]
    with style():
        png = overlay_png(ov, "t", tmp_path / "o.png")
    assert math.isclose(png.axes[1].get_ylim()[1], ov.ylim[1]) and ov.ylim[1] < 2.6e13
