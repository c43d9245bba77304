"""The machine's load per epoch, and the report's warning when variants trained under different load.

A real tiny sweep with real CPU hogs (busy Python processes) started while one variant trains.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sweep.report.timing import timing_warnings
from sweep.tracking import names
from tests.background_sweep import BackgroundSweep

HOGS = 4  # busy processes on top of the training's 2 threads: they get about a third of the cores


def test_the_warning_needs_unequal_load_and_names_each_variant() -> None:
    table = pd.DataFrame(
        {
            "label": ["freeze=none", "freeze=backbone"],
            "run_ids": ["a", "b"],
            "status": ["FINISHED", "FINISHED"],
            "gpu_mem_mb": [float("nan")] * 2,
            "cpu_util_pct": [190.0, 185.0],
            "cpu_share_pct": [95.0, 90.0],
            "load_per_core": [1.0, 1.1],
        }
    )
    frame = pd.DataFrame(columns=["run_id", "status", "start_time", "end_time"])
    assert timing_warnings(frame, table) == []
    table.loc[1, ["cpu_share_pct", "load_per_core"]] = [40.0, 2.5]
    (warning,) = timing_warnings(frame, table)
    assert "different machine load" in warning and "speed-ups" in warning
    assert "freeze=none CPU share 95%, load 1.00/core" in warning
    assert "freeze=backbone CPU share 40%, load 2.50/core" in warning


@pytest.mark.slow
def test_a_cpu_hog_during_one_variant_is_recorded_per_epoch_and_the_report_warns(
    cache_root: Path, tmp_path: Path
) -> None:
    sweep = BackgroundSweep(tmp_path, cache_root, ["freeze=none,backbone", "train.epochs=2"], name="hog")
    sweep.wait_for(lambda: sweep.job_started(1))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(HOGS)]
    try:
        sweep.wait_for(lambda: sweep.job_done(1))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    output = sweep.finish()

    table = pd.read_csv(sweep.sweep_dir / "report" / "report.csv").set_index("freeze")
    assert table.at["backbone", "cpu_share_pct"] * 1.3 < table.at["none", "cpu_share_pct"]
    report = (sweep.sweep_dir / "report" / "report.md").read_text()
    assert "trained under different machine load" in report and "speed-ups" in report
    assert "different machine load" in output  # printed with the report at the sweep's end
    client = MlflowClient(sweep.tracking_uri)
    for run_id in table["run_ids"]:
        for key in (names.CPU_SHARE, names.LOAD_AVG, names.LOAD_PER_CORE):
            history = client.get_metric_history(run_id, key)
            assert sorted(m.step for m in history) == [1, 2]  # one point per epoch
            assert all(m.value > 0 for m in history)
