"""What a variant costs: GPU memory (torch's own counters, this process only), GPU utilisation
(NVML, the devices this variant uses), CPU utilisation and RSS (this process and its dataloader
workers), sampled in a background thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from sweep.tracking import names

Sink = Callable[[dict[str, float], int], None]  # (metrics, step in seconds since start)


def gpu_indices(device: str) -> list[int]:
    """Torch device indices of an ultralytics device string ('0', '0,1', 'cuda:1', 'cpu' -> [])."""
    text = str(device).lower().replace("cuda:", "").replace("cuda", "0")
    return [int(part) for part in text.split(",") if part.strip().isdigit()]


def nvml_index(torch_index: int) -> int:
    """NVML numbers devices physically; torch numbers them within CUDA_VISIBLE_DEVICES."""
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and all(v.strip().isdigit() for v in visible) and torch_index < len(visible):
        return int(visible[torch_index])
    return torch_index


@dataclass
class ResourceMonitor:
    """Samples every `interval_s` into `sink`; `summary()` gives the per-variant figures."""

    device: str
    interval_s: float = 1.0
    sink: Sink | None = None
    gpu_util: list[float] = field(default_factory=list)
    cpu_util: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    step_offset: int = 0  # a resumed run continues its time series after the logged steps

    def __post_init__(self) -> None:
        self._gpus = gpu_indices(self.device)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="freeze-sweep-resources", daemon=True)
        self._process = psutil.Process()
        self._handles: list = []
        self._known: dict[int, psutil.Process] = {}

    def __enter__(self) -> ResourceMonitor:
        if self._gpus:
            self._reset_torch_peaks()
            self._handles = self._open_nvml()
        self._start = time.monotonic()
        self._process.cpu_percent(None)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        step = self.step_offset + int(round(time.monotonic() - self._start))
        metrics = self._sample_cpu()
        if self._handles:
            metrics.update(self._sample_gpus())
        if self.sink:
            self.sink(metrics, step)

    def _sample_cpu(self) -> dict[str, float]:
        processes = [self._process, *self._children()]
        rss = sum(_safe(lambda p=p: p.memory_info().rss, 0) for p in processes) / 2**20
        cpu = sum(_safe(lambda p=p: p.cpu_percent(None), 0.0) for p in processes)
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        self.cpu_util.append(cpu)
        return {names.CPU_RSS: rss, names.CPU_UTIL: cpu}

    def _children(self) -> list[psutil.Process]:
        """Dataloader workers, the same Process objects from sample to sample: psutil measures
        CPU use between two calls on one object, so a fresh object would always read 0."""
        current = _safe(lambda: self._process.children(recursive=True), [])
        self._known = {p.pid: self._known.get(p.pid, p) for p in current}
        return list(self._known.values())

    def _open_nvml(self) -> list:
        try:
            import pynvml

            pynvml.nvmlInit()
            return [pynvml.nvmlDeviceGetHandleByIndex(nvml_index(i)) for i in self._gpus]
        except Exception:  # no driver: utilisation stays absent, not zero
            return []

    def _sample_gpus(self) -> dict[str, float]:
        import pynvml

        utils, used = [], 0.0
        for handle in self._handles:
            utils.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
            used += pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
        util = sum(utils) / len(utils)
        self.gpu_util.append(util)
        return {names.GPU_UTIL: util, names.GPU_MEMORY: used}

    def _reset_torch_peaks(self) -> None:
        import torch

        if torch.cuda.is_available():
            for i in self._gpus:
                torch.cuda.reset_peak_memory_stats(i)

    def summary(self) -> dict[str, float]:
        """Final figures; GPU keys only where a GPU was used (absent, not zero, on CPU)."""
        result = {names.CPU_PEAK_RSS: self.peak_rss_mb}
        if self.cpu_util:
            result[names.CPU_UTIL_MEAN] = sum(self.cpu_util) / len(self.cpu_util)
        if self._gpus:
            import torch

            if torch.cuda.is_available():
                result[names.GPU_PEAK_ALLOCATED] = max(torch.cuda.max_memory_allocated(i) for i in self._gpus) / 2**20
                result[names.GPU_PEAK_RESERVED] = max(torch.cuda.max_memory_reserved(i) for i in self._gpus) / 2**20
        if self.gpu_util:
            result[names.GPU_UTIL_MEAN] = sum(self.gpu_util) / len(self.gpu_util)
            result[names.GPU_UTIL_MAX] = max(self.gpu_util)
        return result


def _safe(read: Callable, default):
    try:
        return read()
    except (psutil.Error, OSError):
        return default
