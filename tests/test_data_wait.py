"""`data_wait_pct`: every variant records per epoch how much of its training waited for batches,
and the report names the variants whose loader set the pace (sweep/tracking/data_wait.py,
sweep/report/timing.py)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from sweep.report.timing import MAX_DATA_WAIT_PCT, timing_warnings
from sweep.tracking import names
from sweep.tracking.data_wait import DataWait
from tests.conftest import Sweep, run_sweep

INPUT_BOUND = "waiting for batches"


def waits_by_variant(sweep: Sweep) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(sweep.tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(names.ROLE) == "variant"]
    return {
        r.data.params[names.P_FREEZE]: [
            (m.step, m.value) for m in client.get_metric_history(r.info.run_id, names.DATA_WAIT)
        ]
        for r in runs
    }


def report_warnings(sweep: Sweep) -> list[str]:
    lines = (sweep.sweep_dir / "report" / "report.md").read_text().splitlines()
    return [line for line in lines if line.startswith("> warning:")]


@pytest.mark.slow
def test_every_epoch_records_its_wait_and_a_fed_sweep_is_not_flagged(tiny_sweep: Sweep) -> None:
    waits = waits_by_variant(tiny_sweep)
    assert sorted(waits) == ["all_but_head", "backbone", "none"]
    for series in waits.values():
        assert [step for step, _ in series] == [1, 2]  # step = epoch, like epoch_time_s
        assert all(0 <= value < MAX_DATA_WAIT_PCT for _, value in series), series
    assert not [w for w in report_warnings(tiny_sweep) if INPUT_BOUND in w]


@pytest.mark.slow
def test_a_variant_that_waits_for_its_images_is_flagged_with_what_helps(tmp_path: Path, cache_root: Path) -> None:
    """Images drawn at 1280 px, trained at 32: ultralytics decodes every 1280-px PNG to shrink it,
    and a frozen YOLOv8n at 32 px computes far less than that. One epoch: the tiny dataset would
    otherwise sit in ultralytics' mosaic buffer from the second epoch on. One torch thread, as on a
    busy machine threads of the compute would wait for each other rather than for the loader."""
    slow = ["data.imgsz=1280", "train.imgsz=32", "train.epochs=1", "freeze=all_but_head", "sweep.cpu_threads=1"]
    sweep = run_sweep(tmp_path, cache_root, slow, name="slow")
    assert sweep.result.returncode == 0, sweep.result.stdout[-3000:] + sweep.result.stderr[-3000:]
    [(step, value)] = waits_by_variant(sweep)["all_but_head"]
    assert step == 1 and MAX_DATA_WAIT_PCT < value <= 100
    [warning] = [w for w in report_warnings(sweep) if INPUT_BOUND in w]
    assert "yolov8n-demo freeze=all_but_head" in warning
    assert all(fix in warning for fix in ("train.cache=ram", "train.workers", "train.imgsz"))


def test_the_warning_averages_replicates_and_ignores_unfinished_or_unmeasured_runs() -> None:
    frame = pd.DataFrame(
        {
            "run_id": ["a1", "a2", "b", "c", "d"],
            "status": ["FINISHED"] * 4 + ["FAILED"],
            "start_time": [None] * 5,
            "end_time": [None] * 5,
            f"metrics.{names.DATA_WAIT}": [70.0, 40.0, 20.0, None, 90.0],
        }
    )
    table = pd.DataFrame(
        {
            "label": ["m freeze=none", "m freeze=10", "m freeze=22", "m freeze=5"],
            "run_ids": ["a1,a2", "b", "c", "d"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "FAILED"],
            "gpu_mem_mb": [1.0] * 4,
            "cpu_util_pct": [None] * 4,
        }
    )
    [warning] = timing_warnings(frame, table)
    assert "(data_wait_pct: m freeze=none 55%)" in warning
    assert timing_warnings(frame.drop(columns=f"metrics.{names.DATA_WAIT}"), table) == []


def call(callbacks: dict, event: str, trainer: SimpleNamespace) -> None:
    for function in callbacks.get(event, []):
        function(trainer)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_only_time_the_gpu_sat_idle_counts_as_waiting() -> None:
    """The host sleeps 0.3 s before each of 4 batches of 0.5 s of queued GPU work. Without a sync
    the GPU is still busy during every sleep: no wait. Synchronised after each batch, it idles
    through every sleep: 1.2 of 3.2 s. A host clock would say 1.2 s in both cases."""
    x = torch.randn(8192, 8192, device="cuda")
    x @ x  # cuBLAS starts up
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(3):
        x @ x
    torch.cuda.synchronize()
    matmuls = max(1, round(0.5 / ((time.perf_counter() - started) / 3)))

    def epoch(sync: bool) -> float:
        logged: list[float] = []
        callbacks = DataWait(lambda metrics, step: logged.append(metrics[names.DATA_WAIT])).callbacks()
        trainer = SimpleNamespace(device=torch.device("cuda:0"), epoch=0)
        call(callbacks, "on_train_start", trainer)
        for _ in range(matmuls):
            x @ x  # busy before the epoch starts, as after the previous epoch
        if sync:
            torch.cuda.synchronize()
        call(callbacks, "on_train_epoch_start", trainer)
        for _ in range(4):
            time.sleep(0.3)
            call(callbacks, "on_train_batch_start", trainer)
            for _ in range(matmuls):
                x @ x
            if sync:
                torch.cuda.synchronize()
            call(callbacks, "on_train_batch_end", trainer)
        call(callbacks, "on_train_epoch_end", trainer)
        return logged[0]

    assert epoch(sync=False) < 5
    assert 25 < epoch(sync=True) < 50
