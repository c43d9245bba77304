"""One ultralytics training, extended only through its callbacks.

Each call builds a fresh `YOLO` object, so callbacks never carry over between variants that run
in one process (the basic launcher, or a reused joblib worker).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sweep.errors import ConfigError

# Integrations ultralytics would otherwise switch on by itself: its MLflow callback would open a
# second run beside ours (issue: duplicate runs, stray experiments), and `sync` phones home.
OFF_SETTINGS = {"mlflow": False, "sync": False, "clearml": False, "comet": False, "dvc": False, "raytune": False}

Callbacks = Mapping[str, Sequence[Callable]]


@dataclass(frozen=True)
class TrainResult:
    save_dir: Path
    best: Path
    last: Path
    metrics: dict


def merged(*callbacks: Callbacks) -> dict[str, list[Callable]]:
    """Several sets of callbacks as one, each event's functions in the order given."""
    result: dict[str, list[Callable]] = {}
    for group in callbacks:
        for event, functions in group.items():
            result.setdefault(event, []).extend(functions)
    return result


def resolve_cpu_threads(value: object) -> int | None:
    """`sweep.cpu_threads`: None keeps ultralytics' choice; "all" is every core this process may use."""
    if value is None:
        return None
    if value == "all":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(
        f"sweep.cpu_threads={value!r}: use null (ultralytics' choice, cores - 1 up to 8), a positive int, or all"
    )


def cpu_threads_callbacks(threads: int | None, device: str) -> Callbacks:
    """Torch threads for a CPU training and its validations.

    ultralytics trains on CPU with min(8, cores - 1) threads, leaving a core to the data loaders:
    on a 2-core laptop that is one thread and half the machine idle. Its `select_device` sets that
    count when the trainer is built and again when the final validation starts, so the count is set
    after each (`on_pretrain_routine_start`, `on_val_start`). Only speed changes, not what is trained.
    """
    if threads is None or device != "cpu":
        return {}

    def use_threads(_) -> None:
        import torch

        torch.set_num_threads(threads)

    return {"on_pretrain_routine_start": [use_threads], "on_val_start": [use_threads]}


def resolve_cpu_workers(value: object) -> bool:
    """`sweep.cpu_workers`: whether a CPU training keeps its `train.workers` loader processes."""
    if not isinstance(value, bool):
        raise ConfigError(f"sweep.cpu_workers={value!r}: use true or false")
    return value


def cpu_workers_callbacks(keep: bool, workers: int, device: str) -> Callbacks:
    """Data-loader worker processes for a CPU training.

    ultralytics sets `workers=0` on CPU when it builds the trainer ("time dominated by inference,
    not dataloading"), before any loader exists; `on_pretrain_routine_start` comes next and puts
    `train.workers` back, so the loaders start their workers as on a GPU. That pays where decoding
    and augmenting images costs more than the model (large images, a small or frozen model) and a
    core is spare. Only speed changes, not what is trained.
    """
    if not keep or device != "cpu":
        return {}

    def keep_workers(trainer) -> None:
        trainer.args.workers = workers

    return {"on_pretrain_routine_start": [keep_workers]}


def configure_ultralytics() -> None:
    from ultralytics.utils import SETTINGS

    if any(SETTINGS.get(key) != value for key, value in OFF_SETTINGS.items()):
        SETTINGS.update(OFF_SETTINGS)


def train(
    start: str | Path,
    data: Path,
    save_dir: Path,
    freeze: Sequence[int],
    args: Mapping,
    callbacks: Callbacks | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train from `start` (a checkpoint or a model yaml) into exactly `save_dir`.

    `freeze` must be a plain list of ints: ultralytics freezes nothing for a Hydra ListConfig.
    """
    try:
        return _train(start, data, save_dir, freeze, args, callbacks, resume)
    finally:
        release_memory()


def release_memory() -> None:
    """Hand the finished training's memory back to the OS.

    Variants run one after another in one process (the basic launcher, a joblib worker). Without
    this, glibc keeps the freed heap of each trainer (model copies, optimizer, EMA, dataloader
    buffers) and the process's peak RSS climbs with every variant (measured: +80 MiB over three
    demo variants), above what a plain `yolo train` of the largest variant needs.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def _train(
    start: str | Path,
    data: Path,
    save_dir: Path,
    freeze: Sequence[int],
    args: Mapping,
    callbacks: Callbacks | None,
    resume: bool,
) -> TrainResult:
    configure_ultralytics()
    from ultralytics import YOLO

    save_dir = Path(save_dir).resolve()
    model = YOLO(str(save_dir / "weights" / "last.pt") if resume else str(start))
    for event, functions in (callbacks or {}).items():
        for function in functions:
            model.add_callback(event, function)
    if resume:
        # ultralytics would otherwise swap in its default dataset (coco8.yaml) for the checkpoint's
        model.train(resume=True, data=str(data), **{k: args[k] for k in ("device", "workers") if k in args})
    else:
        model.train(
            data=str(data),
            freeze=[int(i) for i in freeze],
            project=str(save_dir.parent),
            name=save_dir.name,
            exist_ok=True,
            **args,
        )
    trainer = model.trainer
    return TrainResult(save_dir, Path(trainer.best), Path(trainer.last), dict(trainer.metrics or {}))
