"""Resource figures per variant: real on CPU; the GPU path with NVML and torch's counters faked
(no GPU on this machine), and for real in test_gpu.py when one is there."""

from __future__ import annotations

import sys
import time
import types

import pytest
import torch

from sweep.tracking import names
from sweep.tracking.resources import ResourceMonitor, gpu_indices, nvml_index


@pytest.mark.parametrize(
    ("device", "expected"), [("cpu", []), ("0", [0]), ("0,1", [0, 1]), ("cuda:1", [1]), ("cuda", [0]), ("mps", [])]
)
def test_gpu_indices_follow_ultralytics_device_strings(device: str, expected: list[int]) -> None:
    assert gpu_indices(device) == expected


def test_nvml_numbers_devices_physically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert [nvml_index(0), nvml_index(1)] == [2, 3]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvml_index(1) == 1


def test_cpu_run_reports_rss_and_utilisation_and_no_gpu_metric() -> None:
    samples: list[tuple[dict, int]] = []
    with ResourceMonitor("cpu", interval_s=0.05, sink=lambda m, s: samples.append((m, s))) as monitor:
        _ = [torch.randn(256, 256) @ torch.randn(256, 256) for _ in range(50)]
        time.sleep(0.3)
    summary = monitor.summary()
    assert summary[names.CPU_PEAK_RSS] > 50
    assert names.CPU_UTIL_MEAN in summary
    assert not any(k.startswith("gpu/") for k in summary)
    assert samples and all(names.CPU_RSS in m and names.GPU_UTIL not in m for m, _ in samples)


def fake_nvml(utilisation: list[int], used_mb: float) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    readings = iter(utilisation)
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetHandleByIndex = lambda index: index
    module.nvmlDeviceGetUtilizationRates = lambda handle: types.SimpleNamespace(gpu=next(readings, utilisation[-1]))
    module.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(used=used_mb * 2**20)
    return module


def test_gpu_run_reports_peaks_and_utilisation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([20, 80, 50], used_mb=1234))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda index: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda index: 512 * 2**20)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda index: 640 * 2**20)
    samples: list[dict] = []
    with ResourceMonitor("0", interval_s=10, sink=lambda m, s: samples.append(m)) as monitor:
        for _ in range(3):
            monitor.sample()
    summary = monitor.summary()
    assert summary[names.GPU_PEAK_ALLOCATED] == 512 and summary[names.GPU_PEAK_RESERVED] == 640
    assert summary[names.GPU_UTIL_MEAN] == pytest.approx(50) and summary[names.GPU_UTIL_MAX] == 80
    assert [m[names.GPU_UTIL] for m in samples] == [20, 80, 50]
    assert all(m[names.GPU_MEMORY] == pytest.approx(1234) for m in samples)


def test_cpu_utilisation_counts_child_processes() -> None:
    """Dataloader workers are child processes: their CPU time belongs to the variant."""
    import subprocess

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with ResourceMonitor("cpu", interval_s=0.2) as monitor:
            time.sleep(1.5)
    finally:
        busy.kill()
        busy.wait()
    assert max(monitor.cpu_util) > 50  # the busy child alone uses most of a core
