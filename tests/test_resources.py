"""Resource figures per variant: real on CPU; the GPU path with NVML and torch's counters faked
(no GPU on this machine), and for real in test_gpu.py when one is there."""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pynvml
import pytest
import torch

from sweep.tracking import names
from sweep.tracking.resources import ResourceMonitor, gpu_indices, nvml_index
from tests.conftest import ROOT


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


class FakeGpu:
    """One GPU as NVML reports it, through the real pynvml module with only its driver calls
    replaced: the real structs, the real error classes, the real function signatures.

    `memory` maps pid -> bytes (None: the driver withholds it); `periods` is NVML's sample buffer,
    one {pid: SM %} per sample period; `broken` names functions that raise `error` instead.
    """

    PERIOD_US = 166_667  # NVML samples utilisation about 6 times a second

    def __init__(self, device_util: int = 95, device_used_mb: float = 20_000) -> None:
        self.memory: dict[int, int | None] = {}
        self.periods: list[tuple[int, dict[int, int]]] = []
        self.device_util = device_util
        self.device_used_mb = device_used_mb
        self.broken: set[str] = set()
        self.error = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self.calls: list[str] = []
        self._clock = 0

    def period(self, utilisation: dict[int, int]) -> None:
        """A sample period ending now (NVML stamps CPU time in us), after any earlier one."""
        self._clock = max(self._clock + self.PERIOD_US, int(time.time() * 1e6) + 1)
        self.periods.append((self._clock, utilisation))

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, fake in self.functions().items():
            real = getattr(pynvml, name)
            assert inspect.signature(fake) == inspect.signature(real), name
            monkeypatch.setattr(pynvml, name, self._recorded(name, fake))

    def functions(self) -> dict:
        def nvmlInit():
            pass

        def nvmlDeviceGetHandleByIndex(index):
            return index

        def nvmlDeviceGetComputeRunningProcesses(handle):
            processes = []
            for pid, used in self.memory.items():
                info = pynvml.nvmlStructToFriendlyObject(pynvml.c_nvmlProcessInfo_t(pid=pid, usedGpuMemory=used or 0))
                info.usedGpuMemory = used  # the real wrapper turns NVML_VALUE_NOT_AVAILABLE into None
                processes.append(info)
            return processes

        def nvmlDeviceGetProcessUtilization(handle, timeStamp):
            samples = [
                pynvml.c_nvmlProcessUtilizationSample_t(pid=pid, timeStamp=stamp, smUtil=sm, memUtil=sm // 2)
                for stamp, utilisation in self.periods
                for pid, sm in utilisation.items()
                if stamp > timeStamp
            ]
            if not samples:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
            return samples

        def nvmlDeviceGetUtilizationRates(handle):
            return pynvml.c_nvmlUtilization_t(gpu=self.device_util, memory=40)

        def nvmlDeviceGetMemoryInfo(handle, version=None):
            used = int(self.device_used_mb * 2**20)
            return pynvml.c_nvmlMemory_t(total=80 * 2**30, free=80 * 2**30 - used, used=used)

        return {f.__name__: f for f in locals().values() if callable(f)}

    def _recorded(self, name: str, fake):
        def call(*args, **kwargs):
            self.calls.append(name)
            if name in self.broken:
                raise self.error
            return fake(*args, **kwargs)

        return call


def fake_torch_cuda(monkeypatch: pytest.MonkeyPatch, peak_mb: float = 512, reserved_mb: float = 640) -> list[str]:
    """torch's per-process counters on a machine without CUDA; returns the resets called."""
    resets: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # the variant has trained on it
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: resets.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: resets.append(f"peaks {device}"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: peak_mb * 2**20)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: reserved_mb * 2**20)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved_mb * 2**20)
    return resets


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    fake = FakeGpu()
    fake.install(monkeypatch)
    fake_torch_cuda(monkeypatch)
    return fake


ME = os.getpid()
OTHER = 999_999  # another user's process on the same GPU


def test_gpu_figures_are_this_process_own_not_the_devices(gpu: FakeGpu) -> None:
    gpu.memory = {ME: 1500 * 2**20, OTHER: 9000 * 2**20}
    samples: list[dict] = []
    with ResourceMonitor("0", interval_s=60, sink=lambda m, s: samples.append(m)) as monitor:
        gpu.period({ME: 20, OTHER: 70})
        gpu.period({OTHER: 90})  # a period where only the other process ran: ours was 0
        monitor.sample()
        gpu.period({ME: 80, OTHER: 10})
        monitor.sample()
        monitor.sample()  # nothing new since: NVML answers NotFound, nobody ran
    assert monitor.gpu_source == names.GPU_SOURCE_PROCESS
    assert [m[names.GPU_UTIL] for m in samples] == [10, 80, 0]
    assert all(m[names.GPU_MEMORY] == pytest.approx(1500) for m in samples)
    summary = monitor.summary()
    assert summary[names.GPU_PEAK_ALLOCATED] == 512 and summary[names.GPU_PEAK_RESERVED] == 640
    assert summary[names.GPU_UTIL_MEAN] == pytest.approx(30) and summary[names.GPU_UTIL_MAX] == 80


@pytest.mark.parametrize(
    "broken",
    ["nvmlDeviceGetProcessUtilization", "nvmlDeviceGetComputeRunningProcesses"],
)
def test_a_driver_without_per_process_figures_falls_back_to_the_device_for_the_whole_run(
    gpu: FakeGpu, broken: str
) -> None:
    gpu.memory = {ME: 1500 * 2**20}
    gpu.period({ME: 20})
    gpu.broken = {broken}
    samples: list[dict] = []
    with ResourceMonitor("0", interval_s=60, sink=lambda m, s: samples.append(m)) as monitor:
        monitor.sample()
        gpu.broken = set()  # a driver that refused once is not asked again: one source per run
        monitor.sample()
    assert monitor.gpu_source == names.GPU_SOURCE_DEVICE
    assert [m[names.GPU_UTIL] for m in samples] == [95, 95]
    assert all(m[names.GPU_MEMORY] == pytest.approx(20_000) for m in samples)
    assert gpu.calls.count(broken) == 1


def test_an_old_driver_without_the_function_falls_back(gpu: FakeGpu) -> None:
    """pynvml turns FunctionNotFound into NVMLLibraryMismatchError, which is no NVMLError."""
    gpu.memory = {ME: 2**20}
    gpu.broken = {"nvmlDeviceGetComputeRunningProcesses"}
    gpu.error = pynvml.NVMLLibraryMismatchError("Unversioned function called")
    with ResourceMonitor("0", interval_s=60) as monitor:
        monitor.sample()
    assert monitor.gpu_source == names.GPU_SOURCE_DEVICE and monitor.gpu_util == [95]


def test_per_process_memory_withheld_by_the_driver_falls_back(gpu: FakeGpu) -> None:
    gpu.memory = {ME: None, OTHER: 2**30}
    with ResourceMonitor("0", interval_s=60) as monitor:
        monitor.sample()
    assert monitor.gpu_source == names.GPU_SOURCE_DEVICE


def test_nvml_blind_to_this_pid_falls_back_once_torch_holds_memory(
    gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container NVML lists host PIDs: this process is never among them. Before CUDA starts
    that is indistinguishable from using no GPU yet; once torch holds memory, it is not."""
    gpu.memory = {OTHER: 2**30}
    gpu.period({OTHER: 50})
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    samples: list[dict] = []
    with ResourceMonitor("0", interval_s=60, sink=lambda m, s: samples.append(m)) as monitor:
        monitor.sample()
        assert monitor.gpu_source == names.GPU_SOURCE_PROCESS
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2**30)
        monitor.sample()
    assert monitor.gpu_source == names.GPU_SOURCE_DEVICE
    assert [(m[names.GPU_UTIL], m[names.GPU_MEMORY]) for m in samples] == [(0, 0), (95, pytest.approx(20_000))]


def test_a_child_that_exits_keeps_its_samples_and_frees_its_memory(gpu: FakeGpu) -> None:
    """DDP workers are child processes: their figures are the variant's, also once they exit."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gpu.memory = {ME: 100 * 2**20, child.pid: 900 * 2**20, OTHER: 2**30}
        samples: list[dict] = []
        with ResourceMonitor("0", interval_s=60, sink=lambda m, s: samples.append(m)) as monitor:
            gpu.period({child.pid: 60, OTHER: 30})
            monitor.sample()
            gpu.period({child.pid: 40, ME: 10})  # sampled before it exited, read after
            child.kill()
            child.wait()
            del gpu.memory[child.pid]  # the driver frees an exited process's memory
            monitor.sample()
    finally:
        child.kill()
        child.wait()
    assert monitor.gpu_source == names.GPU_SOURCE_PROCESS
    assert [(m[names.GPU_UTIL], m[names.GPU_MEMORY]) for m in samples] == [(60, 1000), (50, 100)]


def test_each_device_of_a_multi_gpu_variant_is_read(gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    gpu.memory = {ME: 300 * 2**20}
    handles: list[int] = []
    real_handle = pynvml.nvmlDeviceGetHandleByIndex
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda index: handles.append(index) or real_handle(index))
    with ResourceMonitor("0,1", interval_s=60) as monitor:
        gpu.period({ME: 40})
        monitor.sample()
    assert handles == [2, 3]  # torch 0,1 are physical 2,3
    assert monitor.gpu_util == [40]  # the fake shows the same samples on both: the mean
    assert monitor.summary()[names.GPU_PEAK_ALLOCATED] == 512


def test_no_torch_peaks_when_this_process_never_allocated(gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch) -> None:
    """With DDP the training runs in worker processes: this process's counters say nothing."""
    fake_torch_cuda(monkeypatch, peak_mb=0, reserved_mb=0)
    with ResourceMonitor("0,1", interval_s=60) as monitor:
        monitor.sample()
    summary = monitor.summary()
    assert names.GPU_PEAK_ALLOCATED not in summary and names.GPU_PEAK_RESERVED not in summary
    assert names.GPU_UTIL_MEAN in summary


def test_a_reused_worker_hands_back_the_previous_variants_cache_and_peaks(
    gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    resets = fake_torch_cuda(monkeypatch)
    with ResourceMonitor("0,1", interval_s=60):
        assert resets == ["empty_cache", "peaks 0", "peaks 1"]


def variant(gpu: FakeGpu, state: Path, ready, go, results) -> None:
    """One variant in its own process: a monitor on device 0, sampled once NVML's state is set."""
    samples: list[dict] = []
    with ResourceMonitor("0", interval_s=60, sink=lambda m, s: samples.append(m)) as monitor:
        ready.put(os.getpid())
        go.wait()
        loaded = json.loads(state.read_text())
        gpu.memory = {int(pid): used for pid, used in loaded["memory"].items()}
        gpu.periods = [(stamp, {int(pid): sm for pid, sm in u.items()}) for stamp, u in loaded["periods"]]
        monitor.sample()
    results.put((os.getpid(), monitor.gpu_source, samples[0][names.GPU_UTIL], samples[0][names.GPU_MEMORY]))


def test_two_variants_on_one_gpu_each_see_only_their_own_figures(gpu: FakeGpu, tmp_path: Path) -> None:
    """Two real processes share the fake device; NVML's buffer holds both (and a stranger)."""
    context = multiprocessing.get_context("fork")  # the children inherit the installed fakes
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    state = tmp_path / "nvml.json"
    workers = [context.Process(target=variant, args=(gpu, state, ready, go, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    a, b = ready.get(timeout=60), ready.get(timeout=60)
    gpu.memory = {a: 300 * 2**20, b: 700 * 2**20, OTHER: 5000 * 2**20}
    gpu.period({a: 20, b: 60, OTHER: 10})
    gpu.period({a: 30, b: 50})
    state.write_text(json.dumps({"memory": gpu.memory, "periods": gpu.periods}))
    go.set()
    reports = {pid: rest for pid, *rest in (results.get(timeout=60) for _ in workers)}
    for worker in workers:
        worker.join(timeout=60)
    assert reports[a] == [names.GPU_SOURCE_PROCESS, 25, pytest.approx(300)]
    assert reports[b] == [names.GPU_SOURCE_PROCESS, 55, pytest.approx(700)]


def test_cpu_utilisation_counts_child_processes() -> None:
    """Dataloader workers are child processes: their CPU time belongs to the variant. Measured
    against the child's own CPU time, as a loaded machine gives it less than a core."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        start = time.monotonic()
        with ResourceMonitor("cpu", interval_s=0.2) as monitor:
            time.sleep(1.5)
        times = psutil.Process(busy.pid).cpu_times()
        child_pct = 100 * (times.user + times.system) / (time.monotonic() - start)
    finally:
        busy.kill()
        busy.wait()
    assert child_pct > 10  # the child got CPU at all; alone, this process sleeps at ~0%
    assert max(monitor.cpu_util) > child_pct / 2


# A fresh interpreter per state: CUDA's and NVML's state are per process, and set once.
MONITOR_IN_STATE = """
import json, sys, time
{state}
from sweep.tracking.resources import ResourceMonitor
samples = []
with ResourceMonitor("0", interval_s=0.2, sink=lambda metrics, step: samples.append(metrics)) as monitor:
    time.sleep(1.0)
print(json.dumps({{"summary": monitor.summary(), "samples": samples}}))
"""
# Only what this machine lacks is faked: a GPU torch can see.
TORCH_SEES_A_GPU = "import torch; torch.cuda.is_available = lambda: True; torch.cuda.device_count = lambda: 1"
NVML_INIT_FAILS = (
    "import pynvml\n"
    "def no_driver(*args, **kwargs): raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)\n"
    "pynvml.nvmlInit = no_driver"
)


@pytest.mark.parametrize(
    ("state", "env"),
    [
        pytest.param(TORCH_SEES_A_GPU, {}, id="cuda-not-initialised"),
        pytest.param("", {"CUDA_VISIBLE_DEVICES": ""}, id="cuda-unavailable"),
        pytest.param("sys.modules['pynvml'] = None", {}, id="nvml-not-installed"),
        pytest.param(f"{TORCH_SEES_A_GPU}\n{NVML_INIT_FAILS}", {}, id="nvml-init-fails"),
    ],
)
def test_a_gpu_monitor_starts_in_any_process_state(state: str, env: dict) -> None:
    """On a GPU, a monitor started before CUDA was initialised in its process raised "Invalid device
    argument" from torch's peak reset and failed the job: CPU figures go on, GPU figures stay absent."""
    result = subprocess.run(
        [sys.executable, "-c", MONITOR_IN_STATE.format(state=state)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]  # nor in the sampler's thread
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["samples"] and all(names.CPU_RSS in sample for sample in found["samples"])
    assert not any(key.startswith("gpu") for sample in found["samples"] for key in sample)
    assert names.CPU_PEAK_RSS in found["summary"]
    assert names.GPU_PEAK_ALLOCATED not in found["summary"] and names.GPU_UTIL_MEAN not in found["summary"]
