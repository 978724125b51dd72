"""`gdexp report` and `gdexp compare` on real sweeps: the written files are read back and checked."""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from cli_runner import run_cli, store_in
from report_pages import table, plots
from gdexp.commands.report import compare_main
from gdexp.commands.report import main as report

# Two rotated 2-D quadratics, Hessian eigenvalues (1, 10) and (1, 100): GD is stable below
# lr = 2/10 and 2/100. So on [1,10] only 0.25 diverges, on [1,100] all but 0.01 do.
# MLflow keeps 50 points per curve; the report must read all of them from curve.parquet.
LRS = (0.01, 0.1, 0.19, 0.25)
SWEEP = ("-m", "loss=quadratic", "loss.eigenvalues=[1.0,10.0],[1.0,100.0]", "loss.rotate=true",
         "optimizer.lr=" + ",".join(map(str, LRS)), "stopping.maxiter=300", "tracking.curve_points=50")
# The same functions under momentum: a second sweep to compare with the first.
SWEEP_B = ("-m", "loss=quadratic", "loss.eigenvalues=[1.0,10.0],[1.0,100.0]", "loss.rotate=true",
           "optimizer=momentum", "optimizer.lr=0.01,0.1", "stopping.maxiter=300")
GROUPS = ("loss.eigenvalues=[1,10]", "loss.eigenvalues=[1,100]")
LAMBDA_MAX = {GROUPS[0]: 10.0, GROUPS[1]: 100.0}
UI = "http://127.0.0.1:5000"


def _safe(name: str) -> str:
    """A sweep's name in its report folder's name (gdexp.report.select.Selection.folder)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Sweep A in a fresh store and its report built with the defaults; then sweep B beside it."""
    folder = tmp_path_factory.mktemp("report")
    with store_in(folder) as uri:
        assert run_cli(*SWEEP) == 0
        cl = MlflowClient(uri)
        (parent,) = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")
        children = cl.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert report([]) == 0  # the latest sweep, into reports/<sweep name>-<id8>/
        out = folder / "reports" / f"{_safe(parent.info.run_name)}-{parent.info.run_id[:8]}"
        assert run_cli(*SWEEP_B) == 0
        parent_b = next(p for p in cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")
                        if p.info.run_id != parent.info.run_id)
        yield SimpleNamespace(uri=uri, folder=folder, cl=cl, parent=parent, children=children, out=out,
                              md=(out / "report.md").read_text(), html=(out / "report.html").read_text(),
                              printed=printed.getvalue(), parent_b=parent_b)


def _group(run) -> str:
    return GROUPS[0] if json.loads(run.data.params["loss.eigenvalues"])[1] == 10 else GROUPS[1]


def _url(run) -> str:
    return f"{UI}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def test_the_latest_sweep_is_named_and_gets_its_own_folder(sweep):
    p = sweep.parent
    assert (f"No --sweep given: the latest sweep in {sweep.uri}, {p.info.run_name} "
            f"(parent run {p.info.run_id}, started ") in sweep.printed
    assert sweep.out.name == f"{_safe(p.info.run_name)}-{p.info.run_id[:8]}"
    assert f"in reports/{sweep.out.name}/" in sweep.printed


def test_each_groups_answer_is_in_the_first_lines(sweep):
    head = sweep.md[: sweep.md.index("## ")]
    assert "8 runs, 4 diverged, 0 failed; 2 groups by `loss.eigenvalues`." in head
    assert ("- `loss.eigenvalues=[1,10]`: best_lr=0.19 (final loss "
            in head) and "max_stable_lr=0.19, min_diverged_lr=0.25" in head
    assert "- `loss.eigenvalues=[1,100]`: best_lr=0.01 (final loss " in head
    assert "max_stable_lr=0.01, min_diverged_lr=0.1" in head
    assert head.index(GROUPS[0]) < head.index(GROUPS[1])  # groups in the order of their values


def test_the_overlay_has_one_series_per_group_with_hover_and_links(sweep):
    fig = plots(sweep.html)["plot-overlay"]
    series = [t for t in fig["data"] if t.get("showlegend", True) and t["mode"] == "lines+markers"]
    assert [t["name"] for t in series] == list(GROUPS)
    assert len({t["line"]["color"] for t in series}) == 2
    by_group = {g: sorted((r for r in sweep.children if _group(r) == g),
                          key=lambda r: float(r.data.params["optimizer.lr"])) for g in GROUPS}
    for trace in series:
        runs = by_group[trace["name"]]
        assert trace["x"] == [float(r.data.params["optimizer.lr"]) for r in runs]
        for x, y, text, link, run in zip(trace["x"], trace["y"], trace["hovertext"], trace["customdata"], runs):
            assert f"<b>{run.info.run_name}</b>" in text and f"lr: {x:.6g}" in text
            assert f"status: {run.data.tags['gdexp.status']}" in text
            assert link == _url(run) and f"MLflow UI (click): {_url(run)}" in text
            if run.data.tags["gdexp.status"] == "diverged":  # a gap in the line, drawn in the band instead
                assert y is None and f"final loss: diverged at step {run.data.tags['gdexp.diverged_step']}" in text
            else:
                assert y == pytest.approx(run.data.metrics["final_loss"], rel=1e-12)
                assert f"final loss: {run.data.metrics['final_loss']:.6g}" in text


def test_diverged_runs_sit_in_the_band_labelled_with_their_step(sweep):
    fig = plots(sweep.html)["plot-overlay"]
    band = [t for t in fig["data"] if t.get("yaxis") == "y2"]
    assert [t["legendgroup"] for t in band] == list(GROUPS)
    for trace in band:
        diverged = sorted((r for r in sweep.children if _group(r) == trace["legendgroup"]
                           and r.data.tags["gdexp.status"] == "diverged"),
                          key=lambda r: float(r.data.params["optimizer.lr"]))
        assert trace["x"] == [float(r.data.params["optimizer.lr"]) for r in diverged]
        assert trace["marker"]["symbol"] == "x"
        for text, run in zip(trace["hovertext"], diverged):
            assert f"final loss: diverged at step {run.data.tags['gdexp.diverged_step']}" in text
        labelled = [t for t in trace["text"] if t]
        assert labelled and all(t in {r.data.tags["gdexp.diverged_step"] for r in diverged} for t in labelled)
    # The band lies above the results' axis, which holds no diverged run's last finite loss.
    assert fig["layout"]["yaxis2"]["domain"][0] > fig["layout"]["yaxis"]["domain"][1]
    top = 10 ** fig["layout"]["yaxis"]["range"][1]
    finite = [r.data.metrics["final_loss"] for r in sweep.children if r.data.tags["gdexp.status"] != "diverged"]
    assert max(finite) < top < min(r.data.metrics["final_loss"] for r in sweep.children
                                   if r.data.tags["gdexp.status"] == "diverged")


def test_the_overlay_png_draws_the_same(sweep, tmp_path):
    from gdexp.tracking.reader import load_runs
    from gdexp.report.figures import style
    from gdexp.report.overlay import overlay, overlay_png
    from gdexp.results.groups import answers, with_groups

    runs = with_groups(load_runs(sweep=sweep.parent.info.run_id, tracking_uri=sweep.uri))
    ov = overlay(runs, answers(runs), "final_loss", "min")
    with style():
        fig = overlay_png(ov, "title", tmp_path / "o.png")
    band, ax = fig.axes
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == list(GROUPS)
    xs = sorted(float(x) for c in band.collections for x, _ in c.get_offsets())
    assert xs == [0.1, 0.19, 0.25, 0.25]  # [1,100]'s three and [1,10]'s one
    assert {a.get_text() for a in band.texts} <= {r.data.tags.get("gdexp.diverged_step") for r in sweep.children}
    means = [line for line in ax.get_lines() if len(line.get_xdata()) == len(LRS)]
    # The mean lines: a gap (NaN) at every diverged lr.
    assert sorted(int(np.isfinite(np.asarray(m.get_ydata(), float)).sum()) for m in means) == [1, 3]
    assert ax.get_ylim()[1] < 1e3  # the diverged runs' last losses (> 1e3) are not on this axis


def test_closed_form_bounds_are_marked_per_group(sweep):
    for group, lam in LAMBDA_MAX.items():
        line = next(line for line in sweep.md.splitlines() if line.startswith(f"- `{group}`: `lr_max_stable"))
        drawn = dict(re.findall(r"`(lr_max_stable|lr_optimal) = ([0-9.e+-]+)`", line))
        assert float(drawn["lr_max_stable"]) == pytest.approx(2 / lam, rel=1e-6)
        assert float(drawn["lr_optimal"]) == pytest.approx(2 / (1 + lam), rel=1e-5)
    fig = plots(sweep.html)["plot-overlay"]
    marks = [t for t in fig["data"] if t["name"].endswith(": lr_max_stable")]
    assert sorted(t["x"][0] for t in marks) == pytest.approx([0.02, 0.2])


def test_the_runs_table_has_one_row_per_run_and_says_where_runs_diverged(sweep):
    rows = table(sweep.md, "## Runs")
    assert list(rows[0]) == ["loss", "optimizer", "loss.eigenvalues", "lr", "status", "final loss",
                             "best loss", "iterations", "run"]
    assert [(r["loss.eigenvalues"], r["lr"]) for r in rows] == [
        (e, str(lr)) for e in ("[1,10]", "[1,100]") for lr in LRS]
    by_name = {r.info.run_name: r for r in sweep.children}
    for row in rows:
        name, url = re.fullmatch(r"\[(.+)\]\((.+)\)", row["run"]).groups()
        name = name.replace("\\[", "[").replace("\\]", "]")  # brackets escaped in a link text
        run = next(r for r in sweep.children if _url(r) == url)
        t, m = run.data.tags, run.data.metrics
        assert name == run.info.run_name and name in by_name
        assert row["status"] == t["gdexp.status"] and row["iterations"] == str(int(m["iterations"]))
        if t["gdexp.status"] == "diverged":
            assert row["final loss"] == f"diverged at step {t['gdexp.diverged_step']}"
        else:
            assert row["final loss"] == f"{m['final_loss']:.6g}"


def test_loss_curves_are_read_at_full_resolution(sweep):
    for group in GROUPS:
        runs = [r for r in sweep.children if _group(r) == group]
        steps = sum(int(r.data.metrics["iterations"]) + 1 for r in runs)
        section = sweep.md[sweep.md.index(f"### {group}\n"):]
        assert f"4 curves, {steps} points in all." in section
    fig = plots(sweep.html)["plot-loss-eigenvalues-1-10-loss"]
    curves = [t for t in fig["data"] if t["mode"] == "lines"]
    assert [c["name"] for c in curves] == [f"lr={lr:.3g}" for lr in LRS]
    assert all(c["meta"].startswith(f"{UI}/#/experiments/1/runs/") for c in curves)
    assert curves[0]["x"][0] == 0.5 and curves[0]["customdata"][0] == 0  # step 0 on the log axis
    assert fig["layout"]["xaxis"]["type"] == "log"


def test_every_figure_is_written_and_embedded(sweep):
    figures = re.findall(r"!\[(?:\\.|[^\]\\])*\]\(([^)]+)\)", sweep.md)
    slugs = ("loss-eigenvalues-1-10", "loss-eigenvalues-1-100")
    assert sorted(figures) == sorted(["fig-overlay.png"] + [f"fig-{s}-{k}.png" for s in slugs for k in ("loss", "paths")]
                                     + [f"anim-{s}-{k}.gif" for s in slugs for k in ("best", "diverged")])
    for name in figures:
        data = (sweep.out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if name.endswith(".png") else data[:6] == b"GIF89a"
        assert 1000 < len(data) < 1_000_000
    for name in (f for f in figures if f.endswith(".gif")):
        gif = Image.open(sweep.out / name)
        assert gif.size == (480, 408)  # legible: 9-pt text at 96 dpi
        # Every step of a short run (lr 0.1 on [1,100] diverges at step 3), at most 40 of a long one.
        assert (5 if name.endswith("best.gif") else 2) <= gif.n_frames <= 40
    html = sweep.html
    # Self-contained: images inline, plotly.js inline once, the only links lead to the MLflow UI.
    stills = [f for f in figures if not (f == "fig-overlay.png" or f.endswith("-loss.png"))]
    assert len(re.findall(r'<img src="data:image/(?:png|gif);base64,', html)) == len(stills)
    page = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # the markup, less plotly.js and the figures
    assert re.findall(r'src="(?!data:)', page) == []
    links = re.findall(r'href="([^"]*)"', page)
    assert len(links) == len(sweep.children) and all(h.startswith(f"{UI}/#/experiments/1/runs/") for h in links)
    assert html.count("<script>") == 2 + len(plots(html)) and html.count("Plotly.newPlot") == 1
    assert sorted(plots(html)) == ["plot-loss-eigenvalues-1-10-loss", "plot-loss-eigenvalues-1-100-loss",
                                   "plot-overlay"]


def test_contour_axes_carry_the_parameter_names(sweep):
    from gdexp.report.select import coordinates

    assert coordinates(["step", "loss", "grad_norm", "x0", "x1"]) == ["x0", "x1"]
    assert coordinates(["step", "loss", "grad_norm", "lr", "sharpness", "slope", "intercept"]) == [
        "slope", "intercept"]


def test_descent_paths_are_labelled_with_the_names_given(tmp_path):
    from gdexp.core.losses import make_loss
    from gdexp.report.figures import descent_paths, style

    loss = make_loss("quadratic", eigenvalues=[1.0, 10.0])
    runs = pd.DataFrame({"run_id": ["r"], "lr": [0.1], "diverged": [False]})
    path = {"r": np.array([[1.0, 1.0], [0.5, 0.2], [0.1, 0.0]])}
    with style():
        fig = descent_paths("t", loss, runs, path, (-2, 2, -2, 2), tmp_path / "p.png", ("slope", "intercept"))
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("slope", "intercept")


def test_diverged_animation_is_the_smallest_lr_that_diverged(sweep):
    section = sweep.md[sweep.md.index("### loss.eigenvalues=[1,100]", sweep.md.index("## Descent")):]
    assert "Smallest learning rate that diverged: `quadratic-gd-lr=0.1-eigenvalues=[1,100]`" in section
    first = sweep.md[sweep.md.index("### loss.eigenvalues=[1,10]", sweep.md.index("## Descent")):]
    assert "Best run: `quadratic-gd-lr=0.19-eigenvalues=[1,10]`" in first  # lowest final loss of those that did not diverge
    assert "Smallest learning rate that diverged: `quadratic-gd-lr=0.25-eigenvalues=[1,10]`" in first


def test_provenance_and_reproduce_sections(sweep):
    t, parent_id = sweep.parent.data.tags, sweep.parent.info.run_id
    md = sweep.md[sweep.md.index("## Provenance"):]
    assert f"command: `{t['gdexp.command']}`" in md
    assert f"git commit: `{t['gdexp.git_commit']}`" in md and f"Python {t['gdexp.python']}" in md
    hashes = {row["run id"].strip("`"): row["config hash"].strip("`") for row in table(md, "| run |")}
    assert hashes == {r.info.run_id: r.data.tags["gdexp.config_hash"] for r in sweep.children}
    assert f"gdexp rerun --sweep {parent_id} --tracking-uri {sweep.uri}" in md
    assert f"gdexp report --sweep {parent_id} --tracking-uri {sweep.uri}" in md
    assert t["gdexp.command"] in md[md.index("## Reproduce"):]


def test_the_report_is_attached_to_the_parent_run(sweep):
    attached = {Path(f.path).name for f in sweep.cl.list_artifacts(sweep.parent.info.run_id, "report")}
    assert {p.name for p in sweep.out.iterdir()} == attached


def test_building_twice_gives_identical_bytes(sweep):
    again = sweep.folder / "again"
    assert report(["--sweep", sweep.parent.info.run_id, "--out", str(again)]) == 0
    names = sorted(p.name for p in sweep.out.iterdir())
    assert sorted(p.name for p in again.iterdir()) == names and "report.html" in names
    for name in names:
        assert (again / name).read_bytes() == (sweep.out / name).read_bytes(), name


def test_two_sweeps_compared_side_by_side(sweep, capsys, monkeypatch):
    monkeypatch.chdir(sweep.folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.uri)
    a, b = sweep.parent.info.run_id, sweep.parent_b.info.run_id
    assert compare_main([a, b]) == 0
    printed = capsys.readouterr().out
    out = sweep.folder / "reports" / f"compare-{a[:8]}-{b[:8]}"
    assert "Not attached to any MLflow run: they compare several sweeps." in printed
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    name_a, name_b = "optimizer=gd", "optimizer=momentum"  # the keys in which the sweeps differ
    series = [t["name"] for t in plots(html)["plot-overlay"]["data"] if t["mode"] == "lines+markers"]
    assert series == [f"{s}: {g}" for s in (name_a, name_b) for g in GROUPS]
    rows = table(md, "## The sweeps side by side")
    assert list(rows[0]) == ["group", f"{name_a} best_lr", f"{name_a} max_stable_lr",
                             f"{name_b} best_lr", f"{name_b} max_stable_lr"]
    assert [r["group"] for r in rows] == list(GROUPS)
    assert (rows[0][f"{name_a} max_stable_lr"], rows[1][f"{name_a} max_stable_lr"]) == ("0.19", "0.01")
    assert rows[1][f"{name_b} max_stable_lr"] == "0.01"
    assert f"`{name_a}`: `optimizer=gd`" in md and f"`{name_b}`: `optimizer=momentum`" in md
    # `gdexp report --sweep A --sweep B` selects both (it kept only B before).
    from gdexp.commands.report import _parser
    from gdexp.report.select import select

    args = _parser().parse_args(["--sweep", a, "--sweep", b])
    sel = select(args.experiment, args.sweep, None)
    assert (sel.by, sel.key, len(sel.runs)) == ("sweeps", [a, b], 8 + 4)


def test_compare_needs_two_sweeps(capsys):
    with pytest.raises(SystemExit) as exc:
        compare_main(["abc"])
    assert exc.value.code == 2 and "give two sweeps or more" in capsys.readouterr().err


def test_an_experiment_report_covers_every_run_and_is_not_attached(sweep, capsys, monkeypatch):
    monkeypatch.chdir(sweep.folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.uri)
    # A run of no sweep, on another quadratic (3-D): a group of its own.
    assert run_cli("loss=quadratic", "optimizer.lr=0.01", "stopping.maxiter=100") == 0
    capsys.readouterr()
    out = sweep.folder / "experiment"
    assert report(["--experiment", "gdexp", "--out", str(out), "--ui-url", "https://mlflow.example.org/"]) == 0
    printed = capsys.readouterr().out
    assert "Not attached to any MLflow run: they do not all belong to one sweep." in printed
    md = (out / "report.md").read_text()
    assert len(table(md, "## Runs")) == 8 + 4 + 1
    head = md[: md.index("## ")]
    assert "5 groups by `optimizer`, `loss.eigenvalues`, `loss.rotate`, `stopping.maxiter`" in head
    assert ("- `optimizer=gd, loss.eigenvalues=[1,10], loss.rotate=true, stopping.maxiter=300`: "
            "best_lr=0.19") in head
    assert ("- `optimizer=momentum, loss.eigenvalues=[1,100], loss.rotate=true, stopping.maxiter=300`: "
            "best_lr=0.01") in head
    assert len(list(out.glob("fig-*-paths.png"))) == 4  # the 3-D quadratic has no contours
    assert "gdexp report --experiment gdexp" in md
    # Every run links to its page in the MLflow UI given (the trailing / is not doubled).
    links = {c for t in plots((out / "report.html").read_text())["plot-overlay"]["data"]
             for c in (t.get("customdata") or []) if isinstance(c, str) and c}
    runs = [r for r in sweep.cl.search_runs(["1"]) if r.data.tags.get("gdexp.sweep") != "true"]
    assert links == {f"https://mlflow.example.org/#/experiments/1/runs/{r.info.run_id}" for r in runs}


def test_bad_selections_exit_2_with_a_reason(sweep, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.uri)
    child = sweep.children[0].info.run_id
    for args, reason in ((["--sweep", "0" * 32], "no such run in"),
                         (["--sweep", child], "is not a sweep's parent run"),
                         (["--experiment", "nope"], "no experiment named 'nope'")):
        assert report(args) == 2
        assert reason in capsys.readouterr().err
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    from gdexp.tracking.store import client

    client(empty)  # a store with no sweep (a store that is not there is refused as such)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty)
    assert report([]) == 2
    assert "no sweep in" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        report(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--experiment NAME", "--sweep PARENT_RUN_ID", "--out DIR", "--tracking-uri URI",
                   "--ui-url URL", "http://127.0.0.1:5000", "report.html", "report/report.html",
                   "--sweep A --sweep B"):
        assert option in text


def test_a_one_step_spike_reaches_the_loss_figure(tmp_path):
    """The curve figure gets every step, so a spike between MLflow's samples is drawn."""
    from gdexp.report.figures import loss_curves, style

    loss = np.r_[np.geomspace(1.0, 1e-3, 5000), 1e4, np.geomspace(1e-3, 1e-4, 5000)]
    runs = pd.DataFrame({"run_id": ["r"], "lr": [0.01], "diverged": [False]})
    with style():
        fig = loss_curves("spike", runs, {"r": loss}, tmp_path / "spike.png")
    ax = fig.axes[0]
    (drawn,) = ax.collections[0].get_segments()
    assert len(drawn) == 10_001 and drawn[5000, 1] == 1e4
    assert ax.get_ylim()[1] >= 1e4


def test_curves_that_end_early_get_a_log_step_axis_and_lr_labels(tmp_path):
    from gdexp.report.figures import loss_curves, style

    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "lr": [0.01, 0.1, 1.0], "diverged": [False, False, True]})
    losses = {"a": np.geomspace(1, 1e-2, 1000), "b": np.geomspace(1, 1e-4, 1000), "c": np.array([1.0, 1e3, 1e9])}
    with style():
        fig = loss_curves("t", runs, losses, tmp_path / "c.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog"
    assert [a.get_text() for a in ax.texts] == ["0.01", "0.1"]  # the runs that did not diverge
    with style():
        fig = loss_curves("t", runs.iloc[:2], {k: losses[k] for k in "ab"}, tmp_path / "d.png")
    assert fig.axes[0].get_xscale() == "linear"
