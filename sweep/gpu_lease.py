"""A GPU for each parallel worker on one box, held for as long as its variant trains.

Hydra's joblib launcher runs N variants at once but assigns no GPUs, and a round-robin by job
number puts two variants on one GPU as soon as jobs finish out of order. Here each GPU has
`per_gpu` slots, one lock file each; a worker takes a free slot (`filelock`, an OS lock: flock)
and keeps it until the variant ends. The OS drops a lock when its holder dies, so a crashed worker frees its GPU
with no clean-up, and locks work across processes without a server.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from sweep.errors import ConfigError
from sweep.tracking.resources import nvml_index

log = logging.getLogger(__name__)


def gpu_count() -> int:
    """GPUs this process can use (torch counts within CUDA_VISIBLE_DEVICES)."""
    import torch

    return torch.cuda.device_count()


@contextmanager
def lease_gpu(lock_dir: Path, count: int | None = None, per_gpu: int = 1, poll_s: float = 1.0) -> Iterator[int]:
    """Yield the torch index of a GPU that fewer than `per_gpu` other live workers hold, waiting
    while every GPU is full. Every GPU's first slot is tried before any GPU's second, so variants
    spread over the GPUs before they share one."""
    count = gpu_count() if count is None else count
    if count < 1:
        raise ConfigError(f"a GPU lease needs a CUDA GPU, and torch sees {count}: use train.device=cpu")
    if isinstance(per_gpu, bool) or not isinstance(per_gpu, int) or per_gpu < 1:
        raise ConfigError(f"variants per GPU={per_gpu!r}: accepted is a whole number >= 1")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    # Named by the physical GPU, so sweeps with different CUDA_VISIBLE_DEVICES share the same locks.
    slots = [
        (gpu, lock_dir / f"gpu{nvml_index(gpu)}.slot{slot}.lock") for slot in range(per_gpu) for gpu in range(count)
    ]
    held = _take_free_slot(slots)
    if held is None:
        log.info("All %d GPU(s) hold %d variant(s) each: waiting for one to finish", count, per_gpu)
    while held is None:
        time.sleep(poll_s)
        held = _take_free_slot(slots)
    gpu, lock = held
    try:
        yield gpu
    finally:
        lock.release()


def _take_free_slot(slots: list[tuple[int, Path]]) -> tuple[int, FileLock] | None:
    for gpu, path in slots:
        lock = FileLock(path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            continue
        path.write_text(f"{os.getpid()}\n")  # who holds it, for a person looking at the folder
        return gpu, lock
    return None
