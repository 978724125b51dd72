"""`gdexp report` on a real sweep: the written files are read back and checked."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from gdexp.report import main as report
from cli_runner import run_cli, store_in

# A rotated 2-D quadratic with Hessian eigenvalues 1 and 10: GD is stable below
# lr = 2/10, so 0.25 diverges and the others do not. MLflow keeps 50 points per
# curve; the report must read all of them from curve.parquet.
SWEEP = ("-m", "loss=quadratic", "loss.eigenvalues=[1.0,10.0]", "loss.rotate=true",
         "optimizer.lr=0.01,0.1,0.19,0.25", "stopping.maxiter=300", "tracking.curve_points=50")
LAMBDA_MIN, LAMBDA_MAX = 1.0, 10.0



@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One sweep in a fresh store, and its report built once with the defaults."""
    folder = tmp_path_factory.mktemp("report")
    with store_in(folder) as uri:
        assert run_cli(*SWEEP) == 0
        cl = MlflowClient(uri)
        parent = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")[0]
        children = cl.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert report([]) == 0  # the latest sweep, into reports/<sweep name>/
        out = folder / "reports" / parent.data.tags["gdexp.sweep_name"]
        yield SimpleNamespace(uri=uri, folder=folder, cl=cl, parent=parent, children=children,
                              out=out, md=(out / "report.md").read_text())


def _table(md: str, heading: str) -> list[dict]:
    """The first markdown table after `heading`, as dicts by column name."""
    lines = md[md.index(heading):].splitlines()
    rows = [line for line in lines if line.startswith("|")]
    start = lines.index(rows[0])
    rows = [l for l in lines[start:] if l.startswith("|")][: next(
        (i for i, l in enumerate(lines[start:]) if not l.startswith("|")), None)]
    cells = [[c.strip() for c in r.strip("|").split(" | ")] for r in rows]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def test_the_runs_table_has_one_row_per_run_sorted_by_lr(sweep):
    rows = _table(sweep.md, "## Runs")
    by_lr = sorted(sweep.children, key=lambda r: float(r.data.params["optimizer.lr"]))
    assert [r["lr"] for r in rows] == ["0.01", "0.1", "0.19", "0.25"]
    for row, run in zip(rows, by_lr):
        t, m = run.data.tags, run.data.metrics
        assert (row["loss"], row["optimizer"]) == ("quadratic", "gd")
        assert row["status"] == t["gdexp.status"]
        assert row["final loss"] == f"{m['final_loss']:.6g}" and row["best loss"] == f"{m['best_loss']:.6g}"
        assert row["iterations"] == str(int(m["iterations"]))
        assert row["diverged at step"] == t.get("gdexp.diverged_step", "")
    assert [r["status"] for r in rows] == ["max_iters", "converged", "converged", "diverged"]


def test_loss_curves_are_read_at_full_resolution(sweep):
    # MLflow holds at most 50 points per curve here; the figure drew every step.
    steps = sum(int(r.data.metrics["iterations"]) + 1 for r in sweep.children)
    assert steps > 4 * 50
    assert f"4 curves, {steps} points in all." in sweep.md


def test_theory_lines_are_the_closed_form_bounds(sweep):
    drawn = dict(re.findall(r"`(lr_max_stable|lr_optimal) = ([0-9.e+-]+)`", sweep.md))
    assert float(drawn["lr_max_stable"]) == pytest.approx(2 / LAMBDA_MAX, rel=1e-6)
    assert float(drawn["lr_optimal"]) == pytest.approx(2 / (LAMBDA_MIN + LAMBDA_MAX), rel=1e-5)


def test_every_figure_is_written_and_embedded(sweep):
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", sweep.md)
    assert sorted(figures) == ["anim-quadratic-gd-best.gif", "anim-quadratic-gd-diverged.gif",
                               "fig-quadratic-gd-final-vs-lr.png", "fig-quadratic-gd-loss.png",
                               "fig-quadratic-gd-paths.png"]
    for name in figures:
        data = (sweep.out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if name.endswith(".png") else data[:6] == b"GIF89a"
        assert 1000 < len(data) < 1_000_000
    for name in (f for f in figures if f.endswith(".gif")):
        assert 5 <= Image.open(sweep.out / name).n_frames <= 40
    html = (sweep.out / "report.html").read_text()
    # Self-contained: every image inline, nothing fetched from anywhere.
    assert len(re.findall(r'<img src="data:image/(?:png|gif);base64,', html)) == len(figures)
    assert re.findall(r'(?:src|href)="(?!data:)', html) == [] and "<script" not in html
    assert "<td>diverged</td>" in html


def test_diverged_animation_is_the_smallest_lr_that_diverged(sweep):
    assert "Smallest learning rate that diverged: `quadratic-gd-lr=0.25`" in sweep.md
    assert "Best run: `quadratic-gd-lr=0.19`" in sweep.md  # lowest final loss of those that did not diverge


def test_provenance_and_reproduce_sections(sweep):
    t, parent_id = sweep.parent.data.tags, sweep.parent.info.run_id
    md = sweep.md[sweep.md.index("## Provenance"):]
    assert f"command: `{t['gdexp.command']}`" in md
    assert f"git commit: `{t['gdexp.git_commit']}`" in md and f"Python {t['gdexp.python']}" in md
    hashes = {row["run id"].strip("`"): row["config hash"].strip("`") for row in _table(md, "| run |")}
    assert hashes == {r.info.run_id: r.data.tags["gdexp.config_hash"] for r in sweep.children}
    assert f"gdexp rerun --sweep {parent_id} --tracking-uri {sweep.uri}" in md
    assert f"gdexp report --sweep {parent_id} --tracking-uri {sweep.uri}" in md
    assert t["gdexp.command"] in md[md.index("## Reproduce"):]


def test_the_report_is_attached_to_the_parent_run(sweep):
    attached = {Path(f.path).name for f in sweep.cl.list_artifacts(sweep.parent.info.run_id, "report")}
    assert {"report.html", "report.md", "fig-quadratic-gd-loss.png"} <= attached
    assert {p.name for p in sweep.out.iterdir()} <= attached


def test_building_twice_gives_identical_bytes(sweep):
    again = sweep.folder / "again"
    assert report(["--sweep", sweep.parent.info.run_id, "--out", str(again)]) == 0
    names = sorted(p.name for p in sweep.out.iterdir())
    assert sorted(p.name for p in again.iterdir()) == names and "report.html" in names
    for name in names:
        assert (again / name).read_bytes() == (sweep.out / name).read_bytes(), name


def test_an_experiment_report_covers_every_run_and_is_not_attached(sweep, capsys, monkeypatch):
    monkeypatch.chdir(sweep.folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.uri)
    # A run of no sweep, on another quadratic (3-D): a figure group of its own.
    assert run_cli("loss=quadratic", "optimizer.lr=0.01", "stopping.maxiter=100") == 0
    capsys.readouterr()
    out = sweep.folder / "experiment"
    assert report(["--experiment", "gdexp", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Not attached to any MLflow run: they do not all belong to one sweep." in printed
    md = (out / "report.md").read_text()
    assert [r["lr"] for r in _table(md, "## Runs")] == ["0.01", "0.01", "0.1", "0.19", "0.25"]
    assert "### quadratic \u00b7 gd (2)" in md
    for slug in ("quadratic-gd", "quadratic-gd-2"):
        assert (out / f"fig-{slug}-loss.png").stat().st_size > 0
    assert len(list(out.glob("fig-*-paths.png"))) == 1  # the 3-D quadratic has no contours
    assert "gdexp report --experiment gdexp" in md


def test_bad_selections_exit_2_with_a_reason(sweep, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sweep.uri)
    child = sweep.children[0].info.run_id
    for args, reason in ((["--sweep", "0" * 32], "not found"),
                         (["--sweep", child], "is not a sweep's parent run"),
                         (["--experiment", "nope"], "no experiment named 'nope'")):
        assert report(args) == 2
        assert reason in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    assert report([]) == 2
    assert "no sweep in" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        report(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--experiment NAME", "--sweep PARENT_RUN_ID", "--out DIR", "--tracking-uri URI",
                   "report.html", "report/report.html"):
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
