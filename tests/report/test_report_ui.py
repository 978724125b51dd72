"""report.html in a real browser: opened from disk (file://, offline), hovered, clicked.

Needs Debian's Chromium and the playwright package, as tests/e2e/test_mlflow_ui.py (which says
how to get them); skips, saying which is missing, without them.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from mlflow import MlflowClient

from report_pages import plots

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000
UI = "http://127.0.0.1:5000"


@pytest.fixture
def browser_context(tmp_path):
    """A headless Chromium context, 1400x1000, with no network: a request that leaves the file fails."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: the report's browser test needs Debian's chromium package "
                    "(apt-get install -y chromium, as root; .ci/run does it)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs the playwright package (pip install playwright)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        requests = []
        context.on("request", lambda r: requests.append(r.url))
        try:
            yield context, requests
        finally:
            with contextlib.suppress(sync_api.Error):
                for page in context.pages:
                    page.screenshot(path=tmp_path / "last.png")
            browser.close()


@pytest.fixture
def built(gdexp, store, tmp_path):
    """A 3-run sweep (lr 0.05 diverges: past 2/100) and its report: (children by lr, report folder)."""
    code, _, err = gdexp("-m", "loss=quadratic", "optimizer.lr=0.001,0.01,0.05", "stopping.maxiter=200")
    assert code == 0, err
    code, _, err = gdexp("report", "--out", str(tmp_path / "report"))
    assert code == 0, err
    cl = MlflowClient(store)
    (parent,) = cl.search_runs(["1"], "tags.`gdexp.sweep` = 'true'")
    children = cl.search_runs(["1"], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return {float(r.data.params["optimizer.lr"]): r for r in children}, tmp_path / "report"


@pytest.mark.ui
def test_hovering_a_point_shows_its_run_and_clicking_opens_it_in_mlflow(browser_context, built):
    context, requests = browser_context
    runs, folder = built
    run = runs[0.01]
    url = f"{UI}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((folder / "report.html").as_uri())
    page.wait_for_selector("#plot-overlay .main-svg")

    # The figure the browser drew is the one in the file: its first trace, the lr grid.
    trace = page.evaluate("document.getElementById('plot-overlay').data[0]")
    assert trace == plots((folder / "report.html").read_text())["plot-overlay"]["data"][0]
    i = trace["x"].index(0.01)
    assert trace["customdata"][i] == url

    # A real mouse over that point shows the run's hover label.
    page.locator("#plot-overlay").scroll_into_view_if_needed()
    x, y = page.evaluate("""([i]) => {
        // plotly's own axis maps (log axes take log10): the point's place on the page
        const gd = document.getElementById('plot-overlay'), L = gd._fullLayout, box = gd.getBoundingClientRect();
        const t = gd.data[0];
        return [box.left + L.xaxis._offset + L.xaxis.l2p(Math.log10(t.x[i])),
                box.top + L.yaxis._offset + L.yaxis.l2p(Math.log10(t.y[i]))];
    }""", [i])
    page.mouse.move(x, y)
    label = page.locator("#plot-overlay .hoverlayer .hovertext")
    label.wait_for()
    text = label.text_content()
    m = run.data.metrics
    for part in (run.info.run_name, "lr: 0.01", f"status: {run.data.tags['gdexp.status']}",
                 f"final loss: {m['final_loss']:.6g}", f"MLflow UI (click): {url}"):
        assert part in text

    # A click opens the run's page in the MLflow UI (answered here: the test has no server).
    context.route(f"{UI}/**", lambda route: route.fulfill(status=200, body="mlflow", content_type="text/html"))
    with context.expect_page() as opened:
        page.mouse.click(x, y)
    assert opened.value.url == url

    # The diverged run sits in the band, its hover naming the step it diverged at.
    bad = runs[0.05]
    band = page.evaluate("document.getElementById('plot-overlay').data.find(t => t.yaxis === 'y2')")
    assert band["x"] == [0.05]
    assert f"final loss: diverged at step {bad.data.tags['gdexp.diverged_step']}" in band["hovertext"][0]
    assert errors == []
    # Offline: nothing but the file itself and the MLflow page the click asked for was requested.
    assert [r for r in requests if not r.startswith("file://")] == [f"{UI}/"]  # the fragment is not sent
