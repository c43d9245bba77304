"""What a user sees: a store with two tiny sweeps in the real MLflow UI, in headless Chromium at 1366x768.

`freeze-sweep-ui` is started as a user starts it; the page it prints is opened in Debian's Chromium,
driven by Playwright (`executable_path=/usr/bin/chromium`: Playwright's own browser download does
not work offline), in a fresh browser profile as a newcomer's. Screenshots go to the test's tmp
folder, and also to $FREEZE_SWEEP_SHOTS when set.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sweep.report.parent import RECOMMENDED, RECOMMENDED_RUNS
from sweep.tracking import names
from sweep.tracking.parent_run import SweepInfo
from sweep.ui import CREATED, RUN_NAME, TABLE_PX, runs_view
from tests.conftest import ROOT, Sweep, run_sweep

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

# A link's text ends inside the link and the link inside its cell: not cut by an ellipsis.
TEXT_FITS = """e => {
    const text = document.createRange(); text.selectNodeContents(e);
    const link = e.getBoundingClientRect(), cell = e.closest('[role=gridcell]').getBoundingClientRect();
    return text.getBoundingClientRect().right <= link.right + 1 && link.right <= cell.right;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PRINTED = {"runs by freeze level": "runs", "compare charts": "compare", "its summary": "summary"}


@contextmanager
def serve_ui(tracking_uri: str) -> Iterator[dict[str, str]]:
    """`freeze-sweep-ui` on a free loopback port; yields the addresses it printed (runs, summary)."""
    command = [sys.executable, "-m", "sweep.ui", "--tracking-uri", tracking_uri, "--port", str(free_port())]
    ui = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        printed: dict[str, str] = {}
        deadline = time.monotonic() + UI_START_S
        while len(printed) < 3 and time.monotonic() < deadline:
            line = ui.stdout.readline()
            if not line:
                break
            found = re.search(r"(runs by freeze level|compare charts|its summary).*?(http://\S+)", line)
            if found:
                printed[PRINTED[found[1]]] = found[2]
        assert len(printed) == 3, f"freeze-sweep-ui printed no addresses (exit {ui.poll()})"
        yield printed
    finally:
        ui.terminate()  # stops the MLflow server it started, too
        ui.wait(timeout=60)


@contextmanager
def open_browser(width: int = 1366, height: int = 768):
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


@pytest.fixture(scope="module")
def two_sweeps(cache_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Sweep, Sweep]:
    """Two sweeps in one store, the second with another setting (batch), as a user makes them; as
    cheap as that can be: 1 epoch each, one variant in the first."""
    root = tmp_path_factory.mktemp("two-sweeps")
    first = run_sweep(root, cache_root, ["freeze=backbone", "train.epochs=1"], name="first", timeout=1800)
    second = run_sweep(
        root, cache_root, ["freeze=none,all_but_head", "train.epochs=1", "train.batch=4"], name="second", timeout=1800
    )
    for sweep in (first, second):
        assert sweep.result.returncode == 0, sweep.result.stdout[-3000:] + sweep.result.stderr[-3000:]
    return first, second


def test_the_decision_columns_fit_1366_px_beside_the_run_names_and_the_charts_show_the_variants_only() -> None:
    for gpu, sweep_id in itertools.product((False, True), ("s1", None)):
        view = runs_view(sweep_id, gpu, longest_name=30)
        assert view["columnOrder"][:2] == [RUN_NAME, CREATED] and view["columnOrder"][2:-1] == view["selectedColumns"]
        assert sum(view["columnWidths"].values()) <= TABLE_PX, (gpu, sweep_id)  # 30 characters fit
        assert (f"tags.`{names.VIEW_GPU_MEM}`" in view["selectedColumns"]) == gpu
        assert (f"tags.`{names.SWEEP_ID}`" in view["selectedColumns"]) == (sweep_id is None)  # --all: which sweep
    assert runs_view("s1", False)["searchFilter"] == "tags.`sweep.id` = 's1'"
    assert runs_view(None, False, compare=True)["searchFilter"] == "tags.`sweep.role` = 'variant'"


@pytest.mark.slow
@pytest.mark.browser
def test_the_ui_opens_on_the_latest_sweep_with_its_answer_in_view(
    two_sweeps: tuple[Sweep, Sweep], tmp_path: Path
) -> None:
    assert Path(CHROMIUM).is_file(), "needs Debian's chromium: apt-get install -y chromium"
    first, second = two_sweeps
    client = MlflowClient(second.tracking_uri)
    parent = client.get_run(SweepInfo.read(second.sweep_dir).parent_run_id)
    older = client.get_run(SweepInfo.read(first.sweep_dir).parent_run_id)
    table = pd.read_csv(second.sweep_dir / "report" / "report.csv")  # rows in freeze order
    recommended = parent.data.tags[RECOMMENDED_RUNS].split(",")
    best = table[table["label"] == parent.data.tags[RECOMMENDED]].iloc[0]
    # One truth: the summary metrics are the verdict's figures (at 4 significant digits).
    assert parent.data.metrics["sweep/best_mAP50-95"] == pytest.approx(table["mAP50-95"].max(), rel=1e-3, abs=1e-4)
    assert parent.data.metrics["sweep/recommended_mAP50-95"] == pytest.approx(best["mAP50-95"], rel=1e-3, abs=1e-4)
    assert parent.data.metrics["sweep/recommended_train_time_s"] == pytest.approx(best["train_time_s"], rel=1e-3)
    # Sweeps apart: the second sweep's variants say what sets them apart (epochs), the first's keep their names.
    for run_id in table["run_ids"].str.split(",").explode():
        assert client.get_run(run_id).info.run_name.endswith(" · batch 4")
    first_names = [
        r.info.run_name
        for r in client.search_runs([older.info.experiment_id], f"tags.`{names.SWEEP_ID}` = '{first.sweep_dir.name}'")
    ]
    assert first_names and not any("batch" in n for n in first_names)

    with serve_ui(second.tracking_uri) as urls, open_browser() as page:
        page.goto(urls["runs"])
        page.get_by_text(parent.info.run_name, exact=True).first.wait_for()
        page.get_by_text(names.RECOMMENDED_MARK).first.wait_for()
        shoot(page, tmp_path, "runs")
        assert page.get_by_text(older.info.run_name, exact=True).count() == 0  # only the latest sweep
        assert page.get_by_text(f"{len(table) + 1} matching runs").count() == 1  # its variants and parent
        assert page.locator("[role='dialog'], [data-component-id*='assistant.chat_panel']").count() == 0
        assert page.get_by_text("You're viewing a shared view").count() == 0
        for header in ("freeze", names.VIEW_MAP, names.VIEW_DELTA, names.VIEW_SPEEDUP, names.VIEW_TRAIN_TIME):
            box = page.locator("[role='columnheader']", has_text=header).first.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 1366, f"column {header} out of view"
        marked = page.locator("[role='row']", has_text=names.RECOMMENDED_MARK).first.get_attribute("row-index")
        name_part = page.locator(f"[role='row'][row-index='{marked}']").all_inner_texts()
        assert client.get_run(recommended[0]).info.run_name in " ".join(name_part)

        run_names = page.locator("[role='gridcell'][col-id='attributes.`Run Name`'] a").all()
        assert len(run_names) == len(table) + 1
        for name in run_names:  # not cut
            assert name.evaluate(TEXT_FITS), name.inner_text()

        page.goto(urls["compare"])
        page.get_by_text("Parallel Coordinates").first.wait_for()
        assert "compareRunsMode=CHART" in page.url and "workflowType=machine_learning" in page.url
        assert page.get_by_text(f"{len(table)} matching runs").count() == 1  # the variants, not the parent
        assert page.get_by_text(f"{names.TRAIN_TIME} vs. {names.BEST['mAP50-95']}").count() == 1  # the scatter
        shoot(page, tmp_path, "compare")

        page.goto(urls["summary"])
        pick = page.get_by_text(f"{names.RECOMMENDED_MARK}: {parent.data.tags[RECOMMENDED]}").first
        pick.wait_for()
        more = page.get_by_text("Show more").first.bounding_box()
        assert more is None or pick.bounding_box()["y"] < more["y"]  # the pick reads without a click
        best_cell = page.locator("tr, [role='row']", has_text="sweep/best_mAP50-95").first.inner_text()
        assert float(best_cell.split()[-1]) == pytest.approx(table["mAP50-95"].max(), rel=1e-3, abs=1e-4)
        assert page.locator("[data-component-id*='assistant.chat_panel']").count() == 0
        shoot(page, tmp_path, "parent")

    report_html = (second.sweep_dir / "report" / "report.html").as_uri()
    with open_browser(width=390, height=844) as page:
        page.goto(report_html)
        table_width = page.evaluate("document.querySelector('table').scrollWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 < table_width  # the table scrolls alone
        assert page.evaluate("document.querySelector('meta[name=viewport]') !== null")
        shoot(page, tmp_path, "report_phone")
