"""What a variant costs: GPU memory (torch's own counters, this process only), GPU utilisation
and memory (NVML, the devices this variant uses), CPU utilisation and RSS (this process and its
dataloader workers), sampled in a background thread.

NVML's device figures count every process on the GPU, so two variants sharing one would each see
the sum. Where the driver offers them, the GPU time series are NVML's per-process figures for this
process and its children (DDP workers included) instead; `gpu_source` says which were used.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from sweep.tracking import names
from sweep.tracking.periodic import Periodic

log = logging.getLogger("sweep")

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
    gpu_source: str | None = field(default=None, init=False)  # names.GPU_SOURCE_*, None until a GPU sample

    def __post_init__(self) -> None:
        self._gpus = gpu_indices(self.device)
        self._ticker = Periodic(self.sample, self.interval_s, "freeze-sweep-resources")
        self._process = psutil.Process()
        self._handles: list = []
        self._known: dict[int, psutil.Process] = {}
        self._pids: set[int] = {self._process.pid}  # ours at any sample: an exited worker's samples still count
        self._last_seen: list[int] = []  # per device, NVML timestamp (us) of the newest utilisation sample read

    def __enter__(self) -> ResourceMonitor:
        if self._gpus:
            self._reset_torch_counters()
            self._handles = self._open_nvml()
            self._last_seen = [int(time.time() * 1e6)] * len(self._handles)  # NVML stamps CPU time in us
        self._start = time.monotonic()
        self._process.cpu_percent(None)
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ticker.stop()

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
        """Per-process figures while the driver offers them; from the first sample it does not,
        whole-device figures for the rest of the run (`gpu_source` then says "device")."""
        self._pids |= set(self._known)
        figures = self._own_figures() if self.gpu_source != names.GPU_SOURCE_DEVICE else None
        self.gpu_source = names.GPU_SOURCE_DEVICE if figures is None else names.GPU_SOURCE_PROCESS
        util, used = figures or self._device_figures()
        self.gpu_util.append(util)
        return {names.GPU_UTIL: util, names.GPU_MEMORY: used}

    def _own_figures(self) -> tuple[float, float] | None:
        """(utilisation %, memory MB) of this variant's processes; None where NVML cannot tell."""
        import pynvml

        utils, used = [], 0.0
        try:
            for slot, (index, handle) in enumerate(zip(self._gpus, self._handles, strict=True)):
                memory = self._own_memory(handle, index)
                if memory is None:
                    return None
                used += memory
                utils.append(self._own_utilisation(handle, slot))
        except (pynvml.NVMLError, pynvml.NVMLLibraryMismatchError):  # NotSupported, NoPermission, old driver...
            return None
        return sum(utils) / len(utils), used

    def _own_memory(self, handle, torch_index: int) -> float | None:
        import pynvml

        ours = [p for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid in self._pids]
        if any(p.usedGpuMemory is None for p in ours):  # the driver withholds it (Windows WDDM, MIG)
            return None
        if not ours and _holds_cuda_memory(torch_index):  # NVML sees other PIDs (a container's namespace)
            return None
        return sum(p.usedGpuMemory for p in ours) / 2**20

    def _own_utilisation(self, handle, slot: int) -> float:
        """Mean over NVML's sample periods since the last read, a period without a sample of ours
        counting as 0: our share of the SM time, whatever else runs on the device."""
        import pynvml

        try:
            samples = pynvml.nvmlDeviceGetProcessUtilization(handle, self._last_seen[slot])
        except pynvml.NVMLError_NotFound:  # no process ran on the device since the last read
            return 0.0
        fresh = [s for s in samples if s.timeStamp > self._last_seen[slot]]
        if not fresh:
            return 0.0
        self._last_seen[slot] = max(s.timeStamp for s in fresh)
        periods = {s.timeStamp for s in fresh}
        return sum(s.smUtil for s in fresh if s.pid in self._pids) / len(periods)

    def _device_figures(self) -> tuple[float, float]:
        import pynvml

        utils, used = [], 0.0
        for handle in self._handles:
            utils.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
            used += pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
        return sum(utils) / len(utils), used

    def _reset_torch_counters(self) -> None:
        """A reused worker process still holds the previous variant's peaks and cached blocks:
        NVML would count that cache as this variant's memory, so it is handed back first. A
        process that has not initialised CUDA yet has neither, and torch refuses the reset there
        ("Invalid device argument")."""
        import torch

        if not torch.cuda.is_initialized():
            return
        gc.collect()
        torch.cuda.empty_cache()
        for i in self._gpus:
            try:
                torch.cuda.reset_peak_memory_stats(i)
            except RuntimeError as error:  # a device this process cannot use: its peaks stay absent
                log.warning("GPU %d: peak memory not reset (%s)", i, str(error).splitlines()[0])

    def summary(self) -> dict[str, float]:
        """Final figures; GPU keys only where a GPU was used (absent, not zero, on CPU)."""
        result = {names.CPU_PEAK_RSS: self.peak_rss_mb}
        if self.cpu_util:
            result[names.CPU_UTIL_MEAN] = sum(self.cpu_util) / len(self.cpu_util)
        if self._gpus:
            result.update(self._torch_peaks())
        if self.gpu_util:
            result[names.GPU_UTIL_MEAN] = sum(self.gpu_util) / len(self.gpu_util)
            result[names.GPU_UTIL_MAX] = max(self.gpu_util)
        return result

    def _torch_peaks(self) -> dict[str, float]:
        """Absent when this process never allocated (DDP trains in worker processes, not here),
        never initialised CUDA, or cannot read a device's counters."""
        import torch

        if not torch.cuda.is_initialized():
            return {}
        try:
            allocated = max(torch.cuda.max_memory_allocated(i) for i in self._gpus)
            reserved = max(torch.cuda.max_memory_reserved(i) for i in self._gpus)
        except RuntimeError as error:
            log.warning("GPU peak memory not read (%s)", str(error).splitlines()[0])
            return {}
        if reserved <= 0:
            return {}
        return {names.GPU_PEAK_ALLOCATED: allocated / 2**20, names.GPU_PEAK_RESERVED: reserved / 2**20}


def _holds_cuda_memory(torch_index: int) -> bool:
    import torch

    try:
        return torch.cuda.is_initialized() and torch.cuda.memory_reserved(torch_index) > 0
    except RuntimeError:  # a device this process cannot read
        return False


def _safe(read: Callable, default):
    try:
        return read()
    except (psutil.Error, OSError):
        return default
