"""How much of each epoch's training the loop spends waiting for its next batch: `data_wait_pct`.

In ultralytics' loop (engine/trainer.py, `_do_train`) a batch's work (warm-up, forward, backward,
optimizer step, progress bar) runs between `on_train_batch_start` and `on_train_batch_end`; what
lies between one batch's end and the next one's start is the loader handing over the next batch
(plus a progress-bar tick, microseconds). The time from `on_train_epoch_start` to the first batch
counts too: the loader fills its first batches then. So the wait is the sum of those gaps, and its
share is taken of the epoch's training, `on_train_epoch_start` to `on_train_epoch_end` (validation
excluded). Every marker is taken in a callback: nothing of ultralytics is patched.

On CPU training runs on the calling thread, so wall-clock gaps are the wait (ultralytics loads on
that thread too: it sets workers=0 on CPU).

On a GPU the host runs ahead of the device: a host-side gap says when Python waited for the loader,
not whether the GPU waited. If the GPU was still working through queued kernels of the previous
batch, that gap overlaps compute, and counting it would blame the loader for the model's time.
Synchronising at every batch end would fix the attribution by changing what is measured (the host
could no longer queue ahead). Instead each marker is a CUDA event recorded on the training stream:
it completes when the GPU reaches it, so the time between a batch-end event and the next
batch-start event is the time the GPU sat idle between the two batches' work, that is the wait
the GPU itself felt, and no compute of either batch falls inside it. The events are read once per
epoch, after waiting for the epoch's last event (the one sync this adds; the validation that
follows waits for the GPU anyway). The epoch's span is measured between events too, so both
figures are on the GPU's clock.

Not measured in DDP (several GPUs): ultralytics trains in subprocesses where callbacks do not run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sweep.tracking import names

Sink = Callable[[dict[str, float], int], None]  # (metrics, step = epoch, 1-based)


class WallClock:
    """Markers on the host's clock: the CPU path."""

    def mark(self) -> float:
        return time.perf_counter()

    def seconds(self, start: float, end: float) -> float:
        return end - start

    def settle(self, last: float) -> None:
        pass


class CudaClock:
    """Markers as CUDA events on the training stream: they time what the GPU did, not the host."""

    def __init__(self, device) -> None:
        import torch

        self._torch = torch
        self._stream = torch.cuda.current_stream(device)

    def mark(self):
        event = self._torch.cuda.Event(enable_timing=True)
        event.record(self._stream)
        return event

    def seconds(self, start, end) -> float:
        return start.elapsed_time(end) / 1000

    def settle(self, last) -> None:
        """Wait until the GPU reached `last`: every earlier event is then complete and readable."""
        last.synchronize()


def clock_for(device) -> WallClock | CudaClock:
    """The clock that says when a `device` (a torch.device) waited."""
    return CudaClock(device) if getattr(device, "type", "cpu") == "cuda" else WallClock()


class DataWait:
    """Ultralytics callbacks that log `data_wait_pct` per epoch into `sink`."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._clock: WallClock | CudaClock = WallClock()
        self._epoch_start = None
        self._last_end = None
        self._gaps: list[tuple] = []  # (end of the previous batch or epoch start, start of the next batch)

    def callbacks(self) -> dict[str, list[Callable]]:
        return {
            "on_train_start": [self._on_train_start],
            "on_train_epoch_start": [self._on_epoch_start],
            "on_train_batch_start": [self._on_batch_start],
            "on_train_batch_end": [self._on_batch_end],
            "on_train_epoch_end": [self._on_epoch_end],
        }

    def _on_train_start(self, trainer) -> None:
        self._clock = clock_for(trainer.device)

    def _on_epoch_start(self, trainer) -> None:
        # Also after an out-of-memory retry: ultralytics restarts the epoch with a smaller batch.
        self._epoch_start = self._last_end = self._clock.mark()
        self._gaps = []

    def _on_batch_start(self, trainer) -> None:
        self._gaps.append((self._last_end, self._clock.mark()))

    def _on_batch_end(self, trainer) -> None:
        self._last_end = self._clock.mark()

    def _on_epoch_end(self, trainer) -> None:
        if self._epoch_start is None:
            return
        end = self._clock.mark()
        self._clock.settle(end)
        span = self._clock.seconds(self._epoch_start, end)
        waited = sum(self._clock.seconds(a, b) for a, b in self._gaps)
        self._epoch_start, self._gaps = None, []
        if span > 0:
            self.sink({names.DATA_WAIT: min(100.0, 100 * waited / span)}, trainer.epoch + 1)
