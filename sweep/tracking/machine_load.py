"""How loaded the machine was while a variant trained, per epoch, so that the report can tell
timings taken under different conditions apart: a speed-up against a variant that shared the
machine with something else measures the other load, not the freezing.

- `machine/load_avg_1m`, `machine/load_per_core`: the OS's 1-minute load average (every process
  on the machine, this training included) at the epoch's end, and the same over the cores;
- `machine/cpu_share_pct`: the CPU time this process got during the epoch (train + validation)
  over its wall time times torch's threads: near 100 when each thread had a core to itself,
  lower when other processes took them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from sweep.tracking import names

LogMetrics = Callable[[dict[str, float], int], None]  # (metrics, step)


def machine_load_callbacks(log: LogMetrics) -> dict[str, list[Callable]]:
    """ultralytics callbacks that log the load figures of each epoch at step = epoch (1-based)."""
    started: dict[str, float] = {}

    def on_epoch_start(trainer) -> None:  # noqa: ANN001 (ultralytics' trainer)
        started.update(wall=time.monotonic(), cpu=time.process_time())

    def on_epoch_end(trainer) -> None:  # noqa: ANN001
        if not started:  # the final re-validation of best.pt: no epoch to measure
            return
        wall, cpu = time.monotonic() - started.pop("wall"), time.process_time() - started.pop("cpu")
        log(load_figures(wall, cpu, _torch_threads()), trainer.epoch + 1)

    return {"on_train_epoch_start": [on_epoch_start], "on_fit_epoch_end": [on_epoch_end]}


def load_figures(wall_s: float, cpu_s: float, threads: int) -> dict[str, float]:
    load = os.getloadavg()[0]
    figures = {names.LOAD_AVG: load, names.LOAD_PER_CORE: load / (os.cpu_count() or 1)}
    if wall_s > 0:
        figures[names.CPU_SHARE] = 100 * cpu_s / (wall_s * max(1, threads))
    return figures


def _torch_threads() -> int:
    import torch  # already loaded: the trainer runs on it

    return torch.get_num_threads()
