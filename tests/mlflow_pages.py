"""`mlflow server` over a test's store, and its runs page as Playwright sees it (tests/e2e/test_mlflow_ui.py).

The selectors are MLflow 3.17 internals (AG Grid rows, the column picker), checked
against that version; Playwright is imported inside the methods, so this module
imports without it (the tests then skip, saying so).
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

SERVER_START_S = 60  # /health answers after ~4 s on an idle machine, ~13 s on a loaded 2-core one
SEARCH = 'metrics.rmse < 1 and params.model = "tree"'  # the search box's placeholder
EXPAND = 'button[data-component-id*="runnamecellrenderer"]'


@contextlib.contextmanager
def serve(store: str, folder: Path):
    """`mlflow server` over `store` on a free 127.0.0.1 port: yields its base URL.

    Its log is folder/mlflow-server.log; stopped with its workers on the way out.
    """
    mlflow = Path(sys.executable).with_name("mlflow")
    port = _free_port()
    log_path = folder / "mlflow-server.log"
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # 2 processes, not ~10
               MLFLOW_DISABLE_TELEMETRY="true")
    artifacts = folder / "server-artifacts"
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


class RunsTable:
    """The runs page of one experiment, opened on construction.

    AG Grid draws each row twice: run names pinned left, the other columns in the
    center; a row's `row-id` is its run id. Waits are Playwright's `expect` (retried
    up to its timeout), never fixed sleeps.
    """

    def __init__(self, page, url: str, experiment_id: str):
        page.goto(f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
        self.page = page
        self.names = page.locator(".ag-pinned-left-cols-container")
        self.cells = page.locator(".ag-center-cols-container")

    def name_row(self, run):
        return self.names.locator(f'.ag-row[row-id="{run.info.run_id}"]')

    def cell_row(self, run):
        return self.cells.locator(f'.ag-row[row-id="{run.info.run_id}"]')

    def name_link(self, run):
        return self.name_row(run).get_by_role("link", name=run.info.run_name, exact=True)

    def expand(self, parent, children) -> None:
        """Unfold the children under their parent (they start folded)."""
        from playwright.sync_api import expect

        expect(self.name_link(parent)).to_be_visible()
        self.name_row(parent).locator(EXPAND).click()
        expect(self.names.locator(".ag-row")).to_have_count(1 + len(children))

    def pick_columns(self, sections: dict[str, int], screenshot: Path | None = None) -> None:
        """Tick each column in the Columns menu in each of its `sections[column]` sections
        (a numeric hyper-parameter is listed twice: under Metrics and under Parameters)."""
        from playwright.sync_api import expect

        self.page.get_by_role("button", name="Columns", exact=True).click()
        picker = self.page.get_by_role("dialog")
        for column, count in sections.items():
            picker.get_by_placeholder("Search columns").fill(column)
            entries = picker.get_by_text(column, exact=True)
            expect(entries).to_have_count(count)
            for entry in entries.all():
                entry.click()
        if screenshot:
            self.page.screenshot(path=screenshot)
        self.page.keyboard.press("Escape")
        expect(picker).to_be_hidden()

    def search(self, query: str) -> None:
        box = self.page.get_by_placeholder(SEARCH)
        box.fill(query)
        box.press("Enter")

    def shows_exactly(self, parent, shown, hidden) -> None:
        """`shown` children listed under `parent`, none of `hidden` (retried until true)."""
        from playwright.sync_api import expect

        expect(self.name_row(parent)).to_be_visible()
        for run in shown:
            expect(self.name_link(run)).to_be_visible()
        for run in hidden:
            expect(self.name_row(run)).to_have_count(0)
        expect(self.names.locator(".ag-row")).to_have_count(1 + len(shown))
