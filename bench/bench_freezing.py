"""Does freezing pay, and how close does it come to its ideal? Per freeze level (none, backbone,
all_but_head) of YOLOv8n and YOLOv8s built from yaml, trained on generated data: time per epoch
(training and validation apart), images/s, peak memory, and the speedup over `none` beside the
ideal speedup computed from the forward FLOPs of the frozen layers.

    python bench/bench_freezing.py                  # yolov8n + yolov8s, 320 px, 128 images, 3 epochs
    python bench/bench_freezing.py --quick          # yolov8n, 64 px, 16 images, 2 epochs (CI's smoke run)
    python bench/bench_freezing.py --device 0 --batch 64 --n-train 1024   # on a GPU: torch peaks and NVML too

Every training runs in its own process (python bench/bench_freezing.py --one JOB), so its peak RSS
is its own. Records bench/results/freezing-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_overhead import measure  # noqa: E402
from bench.record import spread, write_result  # noqa: E402

LEVELS = ("none", "backbone", "all_but_head")
FULL = {"models": ("yolov8n.yaml", "yolov8s.yaml"), "imgsz": 320, "n_train": 128, "n_val": 32, "epochs": 3, "batch": 16}
QUICK = {"models": ("yolov8n.yaml",), "imgsz": 64, "n_train": 16, "n_val": 8, "epochs": 2, "batch": 8}
# Fixed so that runs compare: optimizer=auto differs across ultralytics versions.
TRAIN_ARGS = {"optimizer": "SGD", "lr0": 0.01, "seed": 0, "plots": False, "warmup_epochs": 1.0}


def layer_flops(model, imgsz: int) -> list[float]:
    """Forward FLOPs of each top-level layer (`model.model[i]`) for one image, from torch's own
    counter; layers it counts nothing for (Concat, Upsample) get 0."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, imgsz, imgsz))
    prefix = f"{type(model).__name__}.model."
    flops = [0.0] * len(model.model)
    for name, counts in counter.get_flop_counts().items():
        index = name.removeprefix(prefix)
        if name.startswith(prefix) and index.isdigit():
            flops[int(index)] = float(sum(counts.values()))
    return flops


def ideal_speedup(flops: Sequence[float], frozen: Sequence[int]) -> float:
    """The training step's speedup if frozen layers cost nothing beyond what they must.

    A training step costs about 3 forward units per layer: the forward pass (1) and the backward
    pass (~2: gradients with respect to the inputs and to the weights, each about one forward for
    convolutions). A frozen prefix (layers 0..k-1, every input upstream of it frozen too) needs
    neither, so it skips 2 of its 3 units; a frozen layer after a trainable one must still pass
    gradients back to it and skips only the weight gradients (1 unit). With f the forward share of
    each part: ideal = 3 / (3 - 2 f_prefix - f_other). It leaves out what freezing does not shrink
    (data loading, loss, optimizer and EMA updates over every parameter), which pulls measured
    speedups below it; torch counts only convolutions and matrix products, so where the uncounted
    memory-bound work (BatchNorm, SiLU, their backward) weighs more, as on small images on a CPU,
    a frozen prefix saves more than its FLOP share and the measured speedup can exceed it.
    """
    total = sum(flops)
    layers = set(frozen)
    prefix_len = next((i for i in range(len(flops)) if i not in layers), len(flops))
    prefix = sum(flops[:prefix_len]) / total
    other = sum(flops[i] for i in layers if i >= prefix_len) / total
    return 3 / (3 - 2 * prefix - other)


def steady(values: Sequence[float]) -> list[float]:
    """Epochs after the first when there are at least three: the first also starts the workers."""
    return list(values[1:] if len(values) >= 3 else values)


class EpochClock:
    """Ultralytics callbacks timing each epoch's training, the compute inside it (batch start to
    batch end: forward, backward, optimizer, EMA) and its validation. The final validation of
    best.pt, after the last epoch, is not counted: it belongs to no epoch."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.train_s: list[float] = []
        self.step_s: list[float] = []
        self.val_s: list[float] = []
        self._val: float | None = None

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def callbacks(self) -> dict[str, list]:
        return {
            "on_train_epoch_start": [self._epoch_start],
            "on_train_batch_start": [self._batch_start],
            "on_train_batch_end": [self._batch_end],
            "on_train_epoch_end": [self._epoch_end],
            "on_val_start": [self._val_start],
            "on_val_end": [self._val_end],
            "on_fit_epoch_end": [self._fit_epoch_end],
        }

    def _epoch_start(self, trainer) -> None:
        self._epoch, self._steps = self._now(), 0.0

    def _batch_start(self, trainer) -> None:
        self._batch = self._now()

    def _batch_end(self, trainer) -> None:
        self._steps += self._now() - self._batch

    def _epoch_end(self, trainer) -> None:
        self.train_s.append(self._now() - self._epoch)
        self.step_s.append(self._steps)

    def _val_start(self, validator) -> None:
        self._val_started = self._now()

    def _val_end(self, validator) -> None:
        self._val = self._now() - self._val_started

    def _fit_epoch_end(self, trainer) -> None:
        if self._val is not None:
            self.val_s.append(self._val)
            self._val = None


def train_one(job: dict) -> None:
    """One training (in its own process): writes its epoch timings and GPU figures to job["result"]."""
    from sweep.tracking.resources import ResourceMonitor
    from sweep.training import train

    clock = EpochClock(cuda=job["args"]["device"] != "cpu")
    with ResourceMonitor(job["args"]["device"], interval_s=0.5) as monitor:
        train(job["model"], Path(job["data"]), Path(job["save_dir"]), job["layers"], job["args"], clock.callbacks())
    gpu = {k: v for k, v in monitor.summary().items() if k.startswith("gpu/")}
    result = {"train_s": clock.train_s, "step_s": clock.step_s, "val_s": clock.val_s, "gpu": gpu}
    Path(job["result"]).write_text(json.dumps(result))


def measure_level(work: Path, model: str, level: str, layers: list[int], data: Path, args: dict) -> dict:
    name = f"{Path(model).stem}-{level}"
    job = {
        "model": model,
        "data": str(data),
        "layers": layers,
        "args": args,
        "save_dir": str(work / "runs" / name),
        "result": str(work / f"{name}.json"),
    }
    env = {**os.environ, "YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false"}
    measured = measure([sys.executable, __file__, "--one", json.dumps(job)], env, work / f"{name}.log")
    return {**json.loads(Path(job["result"]).read_text()), "peak_rss_mib": measured.peak_rss_mib}


def model_figures(model: str, size: dict, device: str, work: Path) -> dict:
    """Every freeze level of one model: timings, memory, measured and ideal speedups."""
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    from sweep.demo.data import TASKS, DemoDataSpec, ensure_dataset
    from sweep.freeze import architecture_of, resolve_freeze

    architecture = architecture_of(yaml_model_load(model), Path(model).stem)
    data = ensure_dataset(DemoDataSpec("target", size["n_train"], size["n_val"], size["imgsz"], 0), work / "cache")
    flops = layer_flops(DetectionModel(model, nc=len(TASKS["target"]), verbose=False), size["imgsz"])
    args = {**TRAIN_ARGS, **{k: size[k] for k in ("epochs", "imgsz", "batch")}, "device": device}
    args["nbs"] = size["batch"]  # an optimizer step every batch, whatever the batch size
    args["workers"] = min(8, os.cpu_count() or 1)
    figures, baseline = {}, None
    for level in LEVELS:
        layers = resolve_freeze(level, architecture)
        run = measure_level(work, model, level, layers, data, args)
        train, step, val = (statistics.median(steady(run[k])) for k in ("train_s", "step_s", "val_s"))
        baseline = baseline or {"train": train, "step": step, "epoch": train + val}
        ideal = ideal_speedup(flops, layers)
        speedup = baseline["train"] / train
        figures[level] = {
            "frozen layers": len(layers),
            "frozen forward FLOPs share": sum(flops[i] for i in layers) / sum(flops),
            "train s/epoch": spread(steady(run["train_s"])),
            "compute s/epoch (batch start to end)": spread(steady(run["step_s"])),
            "val s/epoch": spread(steady(run["val_s"])),
            "images/s (training)": size["n_train"] / train,
            "data loading and other share of training": 1 - step / train,
            "validation share of epoch": val / (train + val),
            "peak RSS MiB": run["peak_rss_mib"],
            **run["gpu"],
            "speedup over none, training": speedup,
            "speedup over none, compute only": baseline["step"] / step,
            "speedup over none, training + validation": baseline["epoch"] / (train + val),
            "ideal speedup (forward FLOPs)": ideal,
            "share of the ideal gain realised (training)": (speedup - 1) / (ideal - 1) if ideal > 1 else None,
        }
    return figures


def print_table(model: str, figures: dict) -> None:
    print(f"\n{model}: median per epoch")
    header = f"{'freeze':14s} {'FLOPs':>6s} {'train s':>8s} {'val s':>7s} {'img/s':>7s} {'RSS MiB':>8s}"
    print(f"{header} {'speedup':>8s} {'ideal':>6s} {'compute':>8s} {'+val':>6s} {'loading':>8s}")
    for level, f in figures.items():
        print(
            f"{level:14s} {f['frozen forward FLOPs share']:6.1%} {f['train s/epoch']['median']:8.2f}"
            f" {f['val s/epoch']['median']:7.2f} {f['images/s (training)']:7.1f} {f['peak RSS MiB']:8,.0f}"
            f" {f['speedup over none, training']:8.2f} {f['ideal speedup (forward FLOPs)']:6.2f}"
            f" {f['speedup over none, compute only']:8.2f} {f['speedup over none, training + validation']:6.2f}"
            f" {f['data loading and other share of training']:8.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="yolov8n only, tiny images and epochs (CI's smoke run)")
    parser.add_argument("--device", default="cpu", help="ultralytics device: cpu, 0, ...")
    parser.add_argument("--batch", type=int, help="batch size (default: 16, or 8 with --quick; larger on a GPU)")
    parser.add_argument("--n-train", type=int, help="training images (default: 128, or 16 with --quick)")
    parser.add_argument("--root", type=Path, help="keep data, runs and logs here (default: a temporary folder)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one training, as a JSON job
    args = parser.parse_args()
    if args.one:
        train_one(json.loads(args.one))
        return
    os.environ.setdefault("YOLO_OFFLINE", "true")
    size = {**(QUICK if args.quick else FULL)}
    size.update({k: v for k, v in (("batch", args.batch), ("n_train", args.n_train)) if v is not None})
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-freezing-") as tmp:
        work = (args.root or Path(tmp)).resolve()
        os.environ.setdefault("YOLO_CONFIG_DIR", str(work / "yolo-config"))
        for model in size["models"]:
            figures[Path(model).stem] = model_figures(model, size, args.device, work)
            print_table(Path(model).stem, figures[Path(model).stem])
    settings = {**size, "quick": args.quick, "device": args.device, "train": TRAIN_ARGS}
    path = write_result("freezing", figures, settings)
    print(f"recorded: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
