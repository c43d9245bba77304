"""The README's pictures, from a real demo run, at 1366x768 in a fresh browser as a newcomer sees
them: the report, the MLflow runs table `freeze-sweep-ui` opens and its compare charts, MLflow's
chart of accuracy against freeze level, and a compare heatmap.

    .venv/bin/python scripts/readme_images.py                    # runs the demo sweep (as `make demo`)
    .venv/bin/python scripts/readme_images.py --root /tmp/demo   # reuses the sweep already under /tmp/demo

Needs Debian's chromium and the playwright package (as the browser test does). Writes
docs/images/{report,report_against_freeze,mlflow_runs,mlflow_compare,mlflow_chart,compare_heatmap}.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sweep.report.parent import SERIES  # noqa: E402
from sweep.tracking.names import RECOMMENDED_MARK  # noqa: E402
from sweep.tracking.parent_run import SweepInfo  # noqa: E402
from tests.test_ui import open_browser, serve_ui  # noqa: E402

SETTLE_MS = 5000  # let MLflow's charts finish drawing before the screenshot


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT, help="project root whose outputs/ hold the sweep (default: here)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    p.add_argument("--sweep-args", nargs="*", default=[], help="extra overrides for the demo sweep")
    args = p.parse_args()
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(args.root), "YOLO_OFFLINE": "true"}
    uri = f"sqlite:///{args.root / 'outputs' / 'mlflow.db'}"
    sweep_dir = latest_sweep_dir(args.root)
    if sweep_dir is None:
        run([sys.executable, "-m", "sweep", "-m", *args.sweep_args], env)
        sweep_dir = latest_sweep_dir(args.root)
    info = SweepInfo.read(sweep_dir)
    args.out.mkdir(parents=True, exist_ok=True)

    compare = args.root / "outputs" / "compare" / "readme"
    command = [sys.executable, "-m", "sweep.compare", "--sweep", info.sweep_id, "--tracking-uri", uri]
    if not (compare / "weight_change.png").is_file():  # already compared: a re-run only re-shoots
        run([*command, "--out", str(compare)], env)
    shutil.copy(compare / "weight_change.png", args.out / "compare_heatmap.png")
    shutil.copy(sweep_dir / "report" / "against_freeze.png", args.out / "report_against_freeze.png")

    with open_browser() as page:
        page.goto((sweep_dir / "report" / "report.html").as_uri())
        page.screenshot(path=str(args.out / "report.png"))
    with serve_ui(uri) as urls, open_browser() as page:
        page.goto(urls["runs"])
        page.get_by_text(RECOMMENDED_MARK).first.wait_for()
        page.wait_for_timeout(SETTLE_MS)
        page.screenshot(path=str(args.out / "mlflow_runs.png"))
        page.goto(urls["compare"])
        page.get_by_text("Parallel Coordinates").first.wait_for()
        page.wait_for_timeout(SETTLE_MS)
        page.screenshot(path=str(args.out / "mlflow_compare.png"))
        page.goto(urls["summary"])  # the landing page, which goes on to the parent run's page
        page.wait_for_url("**/runs/**")
        page.goto(page.url.replace("?", "/model-metrics?", 1))
        page.get_by_text(f"{SERIES}/mAP50-95").first.wait_for()
        page.locator("svg.main-svg").first.wait_for(timeout=120_000)  # the charts drawn, not their spinners
        page.wait_for_timeout(SETTLE_MS)
        page.screenshot(path=str(args.out / "mlflow_chart.png"))
    print(f"images in {args.out}")


def latest_sweep_dir(root: Path) -> Path | None:
    found = sorted((root / "outputs" / "multiruns").glob("*/sweep.json"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def run(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
