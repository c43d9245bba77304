"""The real GPU path: runs only where CUDA is (skipped on CPU machines and in CI).

The per-process NVML figures, the GPU lease and two variants sharing one GPU are faked on CPU in
test_resources.py and test_gpu_lease.py; here they meet a real driver.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from sweep.gpu_lease import lease_gpu
from sweep.tracking import names
from sweep.tracking.resources import ResourceMonitor
from tests.conftest import run_sweep

CONTEXT_SLACK_MB = 2048  # NVML counts the CUDA context and libraries, which torch's counters do not

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def variant_runs(tracking_uri: str) -> list:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    return [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(names.ROLE) == "variant"]


def test_a_gpu_sweep_logs_plausible_memory_and_utilisation(tmp_path: Path, cache_root: Path) -> None:
    sweep = run_sweep(tmp_path, cache_root, ["train.device=0", "freeze=none,backbone", "train.epochs=3"])
    assert sweep.result.returncode == 0, sweep.result.stderr[-3000:]
    client = MlflowClient(sweep.tracking_uri)
    runs = variant_runs(sweep.tracking_uri)
    total_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
    assert len(runs) == 2
    for run in runs:
        m = run.data.metrics
        assert run.data.tags[names.DEVICE] == "0"
        assert run.data.tags[names.GPU_SOURCE] in (names.GPU_SOURCE_PROCESS, names.GPU_SOURCE_DEVICE)
        assert 0 < m[names.GPU_PEAK_ALLOCATED] <= m[names.GPU_PEAK_RESERVED] < total_mb
        assert 0 <= m[names.GPU_UTIL_MEAN] <= m[names.GPU_UTIL_MAX] <= 100
        assert client.get_metric_history(run.info.run_id, names.GPU_UTIL)
        assert any(k.startswith("system/gpu_0_") for k in m)
    frozen, unfrozen = sorted(runs, key=lambda r: r.info.run_name)  # backbone < none
    assert frozen.data.metrics[names.GPU_PEAK_ALLOCATED] < unfrozen.data.metrics[names.GPU_PEAK_ALLOCATED]


def test_nvml_per_process_memory_covers_what_torch_holds() -> None:
    """A driver that offers per-process figures sees this process's tensors (plus its CUDA
    context); one that does not is reported as device-level, never silently mixed."""
    samples: list[dict] = []
    with ResourceMonitor("0", interval_s=0.2, sink=lambda m, s: samples.append(m)) as monitor:
        x = torch.randn(16384, 16384, device="cuda")  # 1 GiB
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            x @ x
            torch.cuda.synchronize()
    held_mb = torch.cuda.max_memory_reserved(0) / 2**20
    total_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
    assert samples and monitor.gpu_source in (names.GPU_SOURCE_PROCESS, names.GPU_SOURCE_DEVICE)
    assert held_mb <= max(m[names.GPU_MEMORY] for m in samples) <= total_mb
    assert max(monitor.gpu_util) > 0


def test_a_lease_hands_out_real_gpus(tmp_path: Path) -> None:
    count = torch.cuda.device_count()
    with lease_gpu(tmp_path, per_gpu=1) as first:
        assert 0 <= first < count
        if count > 1:
            with lease_gpu(tmp_path, per_gpu=1) as second:
                assert second != first


def test_two_variants_sharing_one_gpu_each_log_their_own_figures(tmp_path: Path, cache_root: Path) -> None:
    """Issue 16.2: two workers on one device. With per-process figures each run's GPU memory is
    its own (torch's peak plus a CUDA context), not the device's total of both."""
    sweep = run_sweep(
        tmp_path,
        cache_root,
        ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", "train.device=0", "freeze=none,backbone"],
    )
    assert sweep.result.returncode == 0, sweep.result.stderr[-3000:]
    client = MlflowClient(sweep.tracking_uri)
    runs = variant_runs(sweep.tracking_uri)
    assert len(runs) == 2
    for run in runs:
        if run.data.tags[names.GPU_SOURCE] != names.GPU_SOURCE_PROCESS:
            continue  # this driver offers no per-process figures: nothing of its own to check
        own_mb = max(m.value for m in client.get_metric_history(run.info.run_id, names.GPU_MEMORY))
        assert 0 < own_mb <= run.data.metrics[names.GPU_PEAK_RESERVED] + CONTEXT_SLACK_MB
