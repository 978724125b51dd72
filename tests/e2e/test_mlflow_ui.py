"""Sweeps as a user finds them in the MLflow UI: `mlflow server` over a real store, in Chromium.

One store, one server and one browser for the module: a sweep over two keys with its
report attached, an MLP run on iris, and a run whose loss overflowed. Each test opens
its own page (a fresh browser context: the UI keeps expanded rows and picked columns
in localStorage) and compares what the page shows with what MLflow's client reads.

Needs Debian's Chromium (`apt-get install -y chromium`) and the `playwright` package;
skips, saying which is missing, without them. Never `playwright install`: that downloads
a browser, and this machine has no internet. The selectors are MLflow 3.17 internals
(AG Grid rows, the column picker, the chart cards; tests/mlflow_pages.py holds the runs
page's), which is why pyproject pins mlflow to 3.17. Screenshots of each step are left
in each test's tmp_path.
"""
from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from cli_runner import run_cli, store_in
from mlflow_pages import RunsTable, serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
UI_TIMEOUT_MS = 30_000  # a React app on a loaded 2-core CI machine; typical waits are < 3 s

# Two keys swept: lr 0.05 diverges where the top eigenvalue is 100 (past 2/100) and not
# where it is 10. Three dimensions, not two: the report then draws no contours or
# animations (~3 s, not ~10 s).
SWEEP = ("-m", "loss=quadratic", "loss.eigenvalues=[1,10,10],[1,10,100]",
         "optimizer.lr=0.001,0.01,0.05", "stopping.maxiter=200")
WITH_DATA = ("loss=mlp", "loss.dataset=iris", "loss.hidden=[4]", "stopping.maxiter=20",
             "tracking.experiment=with-data")
# No divergence factor: the loss grows ~10^4-fold a step (|1 - lr*100|^2) until it
# overflows to inf at step 77.
BLOWUP = ("loss=quadratic", "optimizer.lr=1", "stopping.divergence_factor=inf",
          "tracking.experiment=blowup")

LR, STATUS = "optimizer.lr", "gdexp.status"
LR_PARAM, LR_METRIC = f'[col-id="params.`{LR}`"]', f'[col-id="metrics.`{LR}`"]'
STATUS_CELL, DATASET_CELL = f'[col-id="tags.`{STATUS}`"]', '[col-id="attributes.`Dataset`"]'
DIVERGED_QUERY = f"tags.`{STATUS}` = 'diverged'"
LR_FILTERS = ("metrics.lr > 0.005", f"metrics.`{LR}` <= 0.01")  # different runs pass each
CHART_CARD = "experiment-view-compare-runs-card"  # data-testid of one chart on a run's page
# The MLflow Assistant side panel opens by itself on a first visit and narrows the grid
# until columns fall off-screen (AG Grid leaves those out of the DOM); a user who has
# seen it once has this key set.
ASSISTANT_SEEN = "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The module's store, filled by real gdexp commands, read back through MLflow's client."""
    folder = tmp_path_factory.mktemp("ui")
    with store_in(folder) as uri:
        client = MlflowClient(uri)
        assert run_cli(*SWEEP) == 0
        (parent,) = client.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")
        assert run_cli("report", "--sweep", parent.info.run_id) == 0
        assert run_cli(*WITH_DATA) == 0
        assert run_cli(*BLOWUP) == 0
        (with_data,) = client.search_runs([_experiment(client, "with-data")])
        (blowup,) = client.search_runs([_experiment(client, "blowup")])
        yield SimpleNamespace(
            uri=uri, folder=folder, client=client, parent=parent, with_data=with_data, blowup=blowup,
            children=client.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"))


def _experiment(client: MlflowClient, name: str) -> str:
    return client.get_experiment_by_name(name).experiment_id


@pytest.fixture(scope="module")
def mlflow_ui(runs):
    """The base URL of `mlflow server` over the module's store, stopped (with its workers) after.

    Started once the runs are in the store, so the server never creates the schema
    while gdexp does.
    """
    with serve(runs.uri, runs.folder) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium, driven by Playwright; skips where either is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: the UI test needs Debian's chromium package "
                    "(apt-get install -y chromium, as root; .ci/run does it)")
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the UI test needs the playwright package (pip install playwright; .ci/run does it)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)
        try:
            yield browser
        finally:
            sync_api.expect.set_options(timeout=None)  # back to Playwright's 5 s default
            browser.close()


@pytest.fixture
def page(browser, tmp_path):
    """A page in a fresh context, 1920x1080; its last state is saved as last.png."""
    from playwright.sync_api import Error

    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.add_init_script(ASSISTANT_SEEN)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        with contextlib.suppress(Error):  # a crashed page must not hide the failure
            page.screenshot(path=tmp_path / "last.png")  # what the page showed, pass or fail
        context.close()


@pytest.mark.ui
def test_the_runs_page_shows_the_sweep_its_children_by_unique_names_and_the_diverged_run(
        page, runs, mlflow_ui, tmp_path):
    from playwright.sync_api import expect  # here, not at the top: without playwright `page` skips

    parent, children = runs.parent, runs.children
    # What the page must show, from MLflow's client: three rates on two Hessians, the
    # one past 2/100 diverged; the rate is a param (text) and a metric (a number).
    assert sorted(float(r.data.params[LR]) for r in children) == [0.001, 0.001, 0.01, 0.01, 0.05, 0.05]
    assert all(r.data.metrics[LR] == float(r.data.params[LR]) for r in children)
    (diverged,) = [r for r in children if r.data.tags[STATUS] == "diverged"]
    assert diverged.data.params[LR] == "0.05"
    assert json.loads(diverged.data.params["loss.eigenvalues"]) == [1, 10, 100]

    table = RunsTable(page, mlflow_ui, parent.info.experiment_id)
    # The sweep's parent is one row, its children folded under it until expanded.
    expect(table.name_link(parent)).to_be_visible()
    expect(table.names.locator(".ag-row")).to_have_count(1)
    table.expand(parent, children)
    for run in children:
        expect(table.name_link(run)).to_be_visible()

    # Each child by its own name: the client's, unique in the sweep, carrying both swept
    # keys (the cell elides a long name with CSS at 190 px; the link's text is the whole name).
    shown = [table.name_row(r).get_by_role("link").inner_text() for r in children]
    assert shown == [r.info.run_name for r in children]
    assert len(set(shown)) == len(children)
    for run, name in zip(children, shown):
        eigenvalues = ",".join(f"{v:g}" for v in json.loads(run.data.params["loss.eigenvalues"]))
        assert f"lr={run.data.params[LR]}" in name and f"eigenvalues=[{eigenvalues}]" in name, name

    # Each child's learning rate (as the metric and as the param) and status.
    table.pick_columns({LR: 2, STATUS: 1}, tmp_path / "columns.png")
    for run in children:
        row = table.cell_row(run)
        expect(row.locator(LR_PARAM)).to_have_text(run.data.params[LR])
        expect(row.locator(LR_METRIC)).to_have_text(f"{run.data.metrics[LR]:g}")
        expect(row.locator(STATUS_CELL)).to_have_text(run.data.tags[STATUS])
    page.screenshot(path=tmp_path / "sweep.png")

    # Searching for diverged runs leaves exactly the diverged child, under its parent.
    table.search(DIVERGED_QUERY)
    table.shows_exactly(parent, [diverged], [r for r in children if r is not diverged])
    expect(table.cell_row(diverged).locator(LR_PARAM)).to_have_text("0.05")
    expect(table.cell_row(diverged).locator(STATUS_CELL)).to_have_text("diverged")
    page.screenshot(path=tmp_path / "diverged.png")


@pytest.mark.ui
def test_a_numeric_filter_on_the_learning_rate_shows_the_runs_the_client_finds(page, runs, mlflow_ui,
                                                                              tmp_path):
    parent, children = runs.parent, runs.children
    table = RunsTable(page, mlflow_ui, parent.info.experiment_id)
    table.expand(parent, children)
    table.pick_columns({LR: 2})  # for the screenshots: the rates the filters pass
    for i, query in enumerate(LR_FILTERS):
        found = runs.client.search_runs([parent.info.experiment_id], query)
        ids = {r.info.run_id for r in found}
        assert ids and ids < {r.info.run_id for r in children}  # some children pass, not all
        table.search(query)
        table.shows_exactly(parent, [r for r in children if r.info.run_id in ids],
                            [r for r in children if r.info.run_id not in ids])
        page.screenshot(path=tmp_path / f"filter-{i}.png")


@pytest.mark.ui
def test_the_dataset_column_shows_the_data_set_of_a_run_with_data(page, runs, mlflow_ui, tmp_path):
    from playwright.sync_api import expect

    run = runs.with_data
    (given,) = run.inputs.dataset_inputs
    dataset = given.dataset
    assert dataset.name == "iris" and run.data.tags["gdexp.data_sha256"].startswith(dataset.digest)
    table = RunsTable(page, mlflow_ui, run.info.experiment_id)
    cell = table.cell_row(run).locator(DATASET_CELL)
    button = cell.get_by_role("button", name=f"{dataset.name} ({dataset.digest})", exact=True)
    expect(button).to_be_visible()
    expect(cell.get_by_role("status")).to_have_text("training")  # the input's mlflow.data.context
    page.screenshot(path=tmp_path / "dataset-column.png")

    # Its drawer: the data set by name, with its digest.
    button.click()
    drawer = page.get_by_role("dialog", name="Data details for")
    expect(drawer).to_be_visible()
    expect(drawer.get_by_role("link", name=run.info.run_name)).to_be_visible()
    expect(drawer.get_by_role("heading", name=dataset.name, exact=True).first).to_be_visible()
    expect(drawer.locator("code")).to_have_text(dataset.digest)
    page.screenshot(path=tmp_path / "dataset-drawer.png")


@pytest.mark.ui
def test_the_parent_run_lists_the_report_in_its_artifacts_tab(page, runs, mlflow_ui, tmp_path):
    from playwright.sync_api import expect

    parent = runs.parent
    files = [Path(f.path).name for f in runs.client.list_artifacts(parent.info.run_id, "report")]
    assert {"report.html", "report.md", "fig-overlay.png"} <= set(files)
    page.goto(f"{mlflow_ui}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}")
    page.get_by_role("tab", name="Artifacts").click()
    tree = page.get_by_role("main").get_by_role("list").first
    tree.get_by_text("report", exact=True).click()
    folder = tree.get_by_role("listitem").filter(has=page.get_by_text("report", exact=True))
    for name in files:  # in the viewport: not clipped while the folder unfolds
        expect(folder.get_by_text(name, exact=True)).to_be_in_viewport()
    expect(folder.get_by_role("list").get_by_role("listitem")).to_have_count(len(files))
    page.screenshot(path=tmp_path / "artifacts.png")

    # The overlay figure previews as the image logged: the PNG's own width and height.
    folder.get_by_text("fig-overlay.png", exact=True).click()
    image = page.get_by_role("img", name="report/fig-overlay.png", exact=True)
    expect(image).to_be_visible()
    local = runs.client.download_artifacts(parent.info.run_id, "report/fig-overlay.png", str(tmp_path))
    size = struct.unpack(">II", Path(local).read_bytes()[16:24])  # IHDR: width, height
    assert tuple(image.evaluate("img => [img.naturalWidth, img.naturalHeight]")) == size
    page.screenshot(path=tmp_path / "overlay.png")


@pytest.mark.ui
def test_a_run_whose_loss_overflowed_shows_its_loss_and_grad_norm_charts(page, runs, mlflow_ui,
                                                                          tmp_path):
    """Issue 9 item 15: a curve whose latest value was NaN or inf got no chart at all."""
    from playwright.sync_api import expect

    run = runs.blowup
    assert (run.data.tags[STATUS], run.data.tags["gdexp.stop_reason"]) == ("diverged", "inf")
    page.goto(f"{mlflow_ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    expect(page.get_by_role("heading", name=run.info.run_name, exact=True)).to_be_visible()
    page.get_by_role("tab", name="Model metrics").click()
    for metric in ("loss", "grad_norm"):
        history = runs.client.get_metric_history(run.info.run_id, metric)
        steps = [m.step for m in history]
        # Every step before the overflow at step `iterations`: that one is left out (MLflow
        # would store inf as 1.8e308, and a NaN last point hides the whole chart).
        assert steps == list(range(int(run.data.metrics["iterations"])))
        card = page.get_by_test_id(CHART_CARD).filter(
            has=page.get_by_role("heading", name=metric, exact=True))
        plot = card.locator(".js-plotly-plot")
        expect(plot.locator("path.js-line").first).to_be_visible()
        # What plotly draws: each trace's points, read from the chart's own data (float():
        # Playwright hands a whole-valued JS number back as an int, e.g. 461372347429193660).
        traces = plot.evaluate("g => g.data.map(t => [Array.from(t.x), Array.from(t.y)])")
        assert traces and all(x == steps and [float(v) for v in y] == [m.value for m in history]
                              for x, y in traces), metric
    page.screenshot(path=tmp_path / "charts.png")


# A sweep still descending: both runs descend for as long as the test lasts (stopped with SIGTERM
# at the end), written live every second (gdexp.tracking.live). Its loss, a user's (loss=custom),
# sleeps 2 ms a step: a descent this long on a built-in loss kept a core busy for the whole test
# (~20 s of CPU taken from the tests beside it).
SLOW_LOSS = """
import time
import numpy as np
from gdexp.core.losses.base import Loss


class Bowl(Loss):
    name = "slow_bowl"

    def __init__(self, dim=2):
        self.dim = dim

    def value_and_grad(self, x, rows=None):
        time.sleep(0.002)
        return 0.5 * np.einsum("bi,bi->b", x, x), x

    def default_init(self):
        return np.full(self.dim, 2.0)
"""
LIVE_SWEEP = ("-m", "loss=custom", "loss._target_=slowloss.Bowl", "optimizer.lr=0.01,0.2",
              "stopping.maxiter=100000000", "stopping.gtol=0", "tracking.live_every=1")
LIVE_WAIT_S = 300  # for the store to show the run's curve grown (a loaded 2-core machine)


@pytest.fixture
def live_sweep(tmp_path):
    """A sweep running in its own process, its store and folder: yields (store, client, its long run)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "live"
    folder.mkdir()
    (folder / "slowloss.py").write_text(SLOW_LOSS)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("GDEXP_PARENT_RUN_ID", None)
    process = subprocess.Popen([sys.executable, "-c", "from gdexp.commands.main import main; main()", *LIVE_SWEEP,
                                f"hydra.sweep.dir={folder / 'sweep'}"], cwd=folder, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + LIVE_WAIT_S
        while not (folder / "sweep" / "gdexp-plan.json").exists():  # the store made, the parent opened
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.2)
        client = MlflowClient(uri)
        long_run = None
        while long_run is None or not client.get_metric_history(long_run.info.run_id, "loss"):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            found = client.search_runs(["1"], "params.`optimizer.lr` = '0.01'")
            long_run = found[0] if found else None
            time.sleep(0.5)
        yield SimpleNamespace(uri=uri, folder=folder, client=client, run=long_run)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)


@pytest.mark.ui
def test_a_chart_of_a_run_still_descending_gains_points(page, live_sweep, tmp_path):
    """Issue 25: runs show RUNNING while they descend, their charts growing."""
    import time

    from playwright.sync_api import expect

    run, client = live_sweep.run, live_sweep.client
    assert client.get_run(run.info.run_id).info.status == "RUNNING"
    with serve(live_sweep.uri, live_sweep.folder) as url:
        def drawn_steps(shot: str) -> list[int]:
            """The loss chart's steps, as plotly draws them on the run's page (loaded anew: the
            app keeps the histories it fetched while the page stays open)."""
            page.goto(f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
            page.reload()
            expect(page.get_by_role("heading", name=run.info.run_name, exact=True)).to_be_visible()
            page.get_by_role("tab", name="Model metrics").click()
            card = page.get_by_test_id(CHART_CARD).filter(has=page.get_by_role("heading", name="loss", exact=True))
            plot = card.locator(".js-plotly-plot")
            expect(plot.locator("path.js-line").first).to_be_visible()
            page.screenshot(path=tmp_path / shot)
            traces = plot.evaluate("g => g.data.map(t => Array.from(t.x))")
            assert traces and all(x == traces[0] for x in traces)  # plotly's traces of the one curve
            return traces[0]

        first = drawn_steps("live-1.png")
        assert len(first) >= 2
        deadline = time.monotonic() + LIVE_WAIT_S
        while max(m.step for m in client.get_metric_history(run.info.run_id, "loss")) <= max(first):
            assert time.monotonic() < deadline, "the run's curve did not grow in the store"
            time.sleep(0.5)
        second = drawn_steps("live-2.png")  # the page opened again, as a user reloads it
        assert max(second) > max(first) and len(second) <= 320  # more steps, sampled as the final curve is
        assert client.get_run(run.info.run_id).info.status == "RUNNING"


@pytest.mark.ui
def test_a_run_page_charts_its_results_and_what_the_sweep_varies_not_its_constants(page, runs, mlflow_ui,
                                                                                     tmp_path):
    """Issue 25: every numeric hyper-parameter used to be a metric (24 charts on a linear regression
    run, most one constant bar); the run page now charts the results, the learning rate and the keys
    the sweep varies."""
    from playwright.sync_api import expect

    run = max(runs.children, key=lambda r: r.data.metrics.get("iterations", 0))
    metrics = set(run.data.metrics)
    assert {"optimizer.lr", "loss", "final_loss"} <= metrics
    assert not metrics & {"stopping.maxiter", "stopping.gtol", "seed", "tracking.curve_points"}  # constants
    page.goto(f"{mlflow_ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    expect(page.get_by_role("heading", name=run.info.run_name, exact=True)).to_be_visible()
    page.get_by_role("tab", name="Model metrics").click()
    cards = page.get_by_test_id(CHART_CARD)
    expect(cards.first).to_be_visible()
    # The section counts its charts ("Model metrics (10)"); those below the fold render lazily.
    page.wait_for_function("p => new RegExp(p).test(document.body.innerText)",
                           arg=rf"Model metrics\s*\({len(metrics)}\)")
    shown = {cards.nth(i).get_by_role("heading").first.inner_text().strip() for i in range(cards.count())}
    page.screenshot(path=tmp_path / "run-page.png")
    assert shown and shown <= metrics, (sorted(shown), sorted(metrics))  # one chart a metric, none a constant
