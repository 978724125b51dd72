"""A sweep as a user finds it in the MLflow UI: `mlflow server` over a real store, in Chromium.

Needs Debian's Chromium (`apt-get install -y chromium`) and the `playwright` package;
skips, saying which is missing, without them. Never `playwright install`: that downloads
a browser, and this machine has no internet. The selectors are MLflow 3.17 internals
(AG Grid rows, the column picker), which is why pyproject pins mlflow to 3.17.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
UI_TIMEOUT_MS = 30_000  # a React app on a loaded 2-core CI machine; typical waits are < 3 s
SERVER_START_S = 60     # /health answers after ~4 s on an idle machine

LR, STATUS = "optimizer.lr", "gdexp.status"
LR_CELL, STATUS_CELL = f'[col-id="params.`{LR}`"]', f'[col-id="tags.`{STATUS}`"]'
DIVERGED_QUERY = f"tags.`{STATUS}` = 'diverged'"
EXPAND = 'button[data-component-id*="runnamecellrenderer"]'
# The MLflow Assistant side panel opens by itself on a first visit and narrows the grid
# until columns fall off-screen (AG Grid leaves those out of the DOM); a user who has
# seen it once has this key set.
ASSISTANT_SEEN = "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')"


@pytest.fixture
def page(tmp_path):
    """A headless Chromium page, 1920x1080; its last state is saved as last.png."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: the UI test needs Debian's chromium package "
                    "(apt-get install -y chromium, as root; .ci/run does it)")
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the UI test needs the playwright package (pip install playwright; .ci/run does it)")

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        context.add_init_script(ASSISTANT_SEEN)
        context.set_default_timeout(UI_TIMEOUT_MS)
        sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)
        page = context.new_page()
        try:
            yield page
        finally:
            sync_api.expect.set_options(timeout=None)  # back to Playwright's 5 s default
            with contextlib.suppress(sync_api.Error):  # a crashed page must not hide the failure
                page.screenshot(path=tmp_path / "last.png")  # what the page showed, pass or fail
            browser.close()


@pytest.fixture
def sweep(gdexp, store):
    """A 3-run learning-rate sweep, read back through MLflow's client: (parent, children)."""
    code, _, err = gdexp("-m", "loss=quadratic", f"{LR}=0.001,0.01,0.05", "stopping.maxiter=200")
    assert code == 0, err
    client = MlflowClient(store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(experiments, "tags.`gdexp.sweep` = 'true'")
    children = client.search_runs(experiments, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return parent, children


@pytest.fixture
def mlflow_ui(store, sweep, tmp_path):
    """The base URL of `mlflow server` over the test's store, stopped (with its workers) after.

    Started once the sweep is in the store, so the server never creates the schema
    while gdexp does.
    """
    mlflow = Path(sys.executable).with_name("mlflow")
    port = _free_port()
    log_path = tmp_path / "mlflow-server.log"
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # 2 processes, not ~10
               MLFLOW_DISABLE_TELEMETRY="true")
    artifacts = tmp_path / "server-artifacts"
    artifacts.mkdir()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", store,
             "--default-artifact-root", str(artifacts),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)  # its own process group: uvicorn outlives a killed parent
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, server, log_path)
        yield url
    finally:
        _stop(server)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"mlflow server gave no /health in {SERVER_START_S} s:\n{log_path.read_text()}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left of it.

    The SIGKILL comes once the parent has exited (a uvicorn worker may linger) or after 10 s.
    """
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.ui
def test_the_runs_page_shows_the_sweep_its_children_and_the_diverged_run(page, sweep, mlflow_ui,
                                                                          tmp_path):
    from playwright.sync_api import expect  # here, not at the top: without playwright `page` skips

    parent, children = sweep
    # What the page must show, from MLflow's client: three rates, the one past 2/100 diverged.
    assert sorted(float(r.data.params[LR]) for r in children) == [0.001, 0.01, 0.05]
    (diverged,) = [r for r in children if r.data.tags[STATUS] == "diverged"]
    assert diverged.data.params[LR] == "0.05"

    page.goto(f"{mlflow_ui}/#/experiments/{parent.info.experiment_id}/runs"
              "?workflowType=machine_learning")
    # AG Grid draws each row twice: run names pinned left, the other columns in the center.
    names = page.locator(".ag-pinned-left-cols-container")
    cells = page.locator(".ag-center-cols-container")

    def name_row(run):
        return names.locator(f'.ag-row[row-id="{run.info.run_id}"]')

    def cell_row(run):
        return cells.locator(f'.ag-row[row-id="{run.info.run_id}"]')

    def name_link(run):
        return name_row(run).get_by_role("link", name=run.info.run_name, exact=True)

    # The sweep's parent is one row, its children folded under it until expanded.
    expect(name_link(parent)).to_be_visible()
    expect(names.locator(".ag-row")).to_have_count(1)
    name_row(parent).locator(EXPAND).click()
    expect(names.locator(".ag-row")).to_have_count(1 + len(children))
    for run in children:
        expect(name_link(run)).to_be_visible()

    # Each child's learning rate and status, as columns picked in the Columns menu.
    page.get_by_role("button", name="Columns", exact=True).click()
    picker = page.get_by_role("dialog")
    for column in (LR, STATUS):
        picker.get_by_placeholder("Search columns").fill(column)
        picker.get_by_text(column, exact=True).click()
    page.keyboard.press("Escape")
    expect(picker).to_be_hidden()
    for run in children:
        expect(cell_row(run).locator(LR_CELL)).to_have_text(run.data.params[LR])
        expect(cell_row(run).locator(STATUS_CELL)).to_have_text(run.data.tags[STATUS])
    page.screenshot(path=tmp_path / "sweep.png")

    # Searching for diverged runs leaves exactly the diverged child, under its parent.
    search = page.get_by_placeholder('metrics.rmse < 1 and params.model = "tree"')
    search.fill(DIVERGED_QUERY)
    search.press("Enter")
    expect(names.locator(".ag-row")).to_have_count(2)
    expect(name_row(parent)).to_be_visible()
    expect(name_link(diverged)).to_be_visible()
    expect(cell_row(diverged).locator(LR_CELL)).to_have_text("0.05")
    expect(cell_row(diverged).locator(STATUS_CELL)).to_have_text("diverged")
    page.screenshot(path=tmp_path / "diverged.png")
