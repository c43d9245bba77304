"""The real GPU path: runs only where CUDA is (skipped on CPU machines and in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from tests.conftest import run_sweep

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_a_gpu_sweep_logs_plausible_memory_and_utilisation(tmp_path: Path, cache_root: Path) -> None:
    sweep = run_sweep(tmp_path, cache_root, ["train.device=0", "freeze=none,backbone", "train.epochs=3"])
    assert sweep.result.returncode == 0, sweep.result.stderr[-3000:]
    client = MlflowClient(sweep.tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(names.ROLE) == "variant"]
    total_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
    assert len(runs) == 2
    for run in runs:
        m = run.data.metrics
        assert run.data.tags[names.DEVICE] == "0"
        assert 0 < m[names.GPU_PEAK_ALLOCATED] <= m[names.GPU_PEAK_RESERVED] < total_mb
        assert 0 <= m[names.GPU_UTIL_MEAN] <= m[names.GPU_UTIL_MAX] <= 100
        assert client.get_metric_history(run.info.run_id, names.GPU_UTIL)
        assert any(k.startswith("system/gpu_0_") for k in m)
    frozen, unfrozen = sorted(runs, key=lambda r: r.info.run_name)  # backbone < none
    assert frozen.data.metrics[names.GPU_PEAK_ALLOCATED] < unfrozen.data.metrics[names.GPU_PEAK_ALLOCATED]
