"""What a user sees: the tiny sweep's store in the real MLflow UI, in headless Chromium.

`freeze-sweep-ui` is started as a user starts it; the page it prints is opened in Debian's Chromium,
driven by Playwright (`executable_path=/usr/bin/chromium`: Playwright's own browser download does
not work offline). Screenshots go to the test's tmp folder, and also to $FREEZE_SWEEP_SHOTS when set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sweep.report.parent import NOTE, RECOMMENDED, RUN_COLOR
from sweep.tracking import names
from sweep.tracking.lifecycle import SweepInfo
from tests.conftest import ROOT, Sweep

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UI_START_S = 240  # the MLflow server starts in 5-60 s, more on a loaded machine
PAGE_TIMEOUT_MS = 120_000

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_ui(tracking_uri: str) -> Iterator[dict[str, str]]:
    """`freeze-sweep-ui` on a free loopback port; yields the addresses it printed (runs, summary)."""
    command = [sys.executable, "-m", "sweep.ui", "--tracking-uri", tracking_uri, "--port", str(free_port())]
    ui = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        printed: dict[str, str] = {}
        deadline = time.monotonic() + UI_START_S
        while len(printed) < 2 and time.monotonic() < deadline:
            line = ui.stdout.readline()
            if not line:
                break
            found = re.search(r"(runs by freeze level|its summary).*?(http://\S+)", line)
            if found:
                printed["runs" if found[1].startswith("runs") else "summary"] = found[2]
        assert len(printed) == 2, f"freeze-sweep-ui printed no addresses (exit {ui.poll()})"
        yield printed
    finally:
        ui.terminate()  # stops the MLflow server it started, too
        ui.wait(timeout=60)


@contextmanager
def open_browser(width: int = 1400, height: int = 900):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def shoot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    if os.environ.get("FREEZE_SWEEP_SHOTS"):
        Path(os.environ["FREEZE_SWEEP_SHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(os.environ["FREEZE_SWEEP_SHOTS"]) / path.name)
    return path


def numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def test_the_ui_opens_on_the_runs_in_freeze_order_with_the_verdict(tiny_sweep: Sweep, tmp_path: Path) -> None:
    assert Path(CHROMIUM).is_file(), "needs Debian's chromium: apt-get install -y chromium"
    client = MlflowClient(tiny_sweep.tracking_uri)
    parent_id = SweepInfo.read(tiny_sweep.sweep_dir).parent_run_id
    parent = client.get_run(parent_id)
    table = pd.read_csv(tiny_sweep.sweep_dir / "report" / "report.csv")  # rows in freeze order
    children = [client.get_run(run_id) for run_id in table["run_ids"]]
    assert [c.data.tags[names.PARENT_RUN_ID] for c in children] == [parent_id] * 3
    assert len({c.data.tags[RUN_COLOR] for c in children}) == 3  # one colour each, as in the report's plots

    with serve_ui(tiny_sweep.tracking_uri) as urls, open_browser() as page:
        page.goto(urls["runs"])
        names_in_order = [c.info.run_name for c in children] + [parent.info.run_name]
        for name in names_in_order:
            page.get_by_text(name, exact=True).first.wait_for()
        page.get_by_text("best/mAP50", exact=True).first.wait_for()
        shoot(page, tmp_path, "runs")
        assert "Overview" not in page.locator("main, body").first.inner_text()[:200]
        # The grid draws each row in parts (pinned name, scrolling metrics) that share a row-index.
        positions = [
            int(page.locator("[role='row']", has_text=name).first.get_attribute("row-index")) for name in names_in_order
        ]
        assert positions == [0, 1, 2, 3]  # children by frozen layers, then the parent (no frozen_layers)
        for position, child in zip(positions, children, strict=False):
            parts = page.locator(f"[role='row'][row-index='{position}']").all_inner_texts()
            values = numbers(" ".join(p.replace(child.info.run_name, "") for p in parts))
            assert any(abs(n - child.data.metrics[names.BEST["mAP50"]]) < 1e-3 for n in values)

        page.goto(urls["summary"])
        recommended = parent.data.tags[RECOMMENDED]
        page.get_by_text("Recommendation:").first.wait_for()
        description = page.get_by_text("Recommendation:").first.locator("xpath=..").inner_text()
        assert recommended in description
        shoot(page, tmp_path, "parent")

        base = urls["runs"].split("/#/")[0]
        artifact_url = f"{base}/get-artifact?path=report/report.html&run_uuid={parent_id}"
        with urllib.request.urlopen(artifact_url, timeout=60) as response:
            report_html = response.read().decode()
        assert "Recommendation:" in report_html and recommended in report_html
        page.goto(urls["summary"].replace("?", "/artifacts/report/report.html?", 1))
        page.get_by_text("report.html").first.wait_for()
        shoot(page, tmp_path, "artifacts")

    (tmp_path / "report.html").write_text(report_html)
    with open_browser(width=1024, height=800) as page:
        page.goto((tmp_path / "report.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 1024  # no sideways scrolling
        shoot(page, tmp_path, "report")
    assert json.loads(client.get_experiment(parent.info.experiment_id).tags["mlflow.sharedViewState.freeze-sweep-runs"])
    assert parent.data.tags[NOTE].startswith("## freeze-sweep report")
