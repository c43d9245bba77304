"""Benchmark `sweep.compare`: three YOLOv8s-sized checkpoints, 64 calibration images at 320 px.

Builds everything itself (no training, no download): a yolov8s.yaml base, a variant with
layers 10-22 perturbed (saved as freeze=10) and one with only the head perturbed (freeze=22),
plus synthetic images. Prints seconds per stage, the total and the CPU time; the target is
under 20 s on 2 CPU cores (issue 14).

    python bench/bench_compare.py [--n-images 64] [--imgsz 320] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from copy import deepcopy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_S = 20.0


def make_checkpoints(folder: Path) -> tuple[Path, Path, Path]:
    """Base, freeze=10 and freeze=22 checkpoints in ultralytics' layout (FP16 model + train args)."""
    import torch
    import ultralytics
    from ultralytics.nn.tasks import DetectionModel

    base = DetectionModel("yolov8s.yaml", verbose=False).eval()
    generator = torch.Generator().manual_seed(0)

    def variant(layers: range) -> torch.nn.Module:
        model = deepcopy(base)
        with torch.no_grad():
            for i in layers:
                for p in model.model[i].parameters():
                    p.add_(torch.randn(p.shape, generator=generator) * 0.05 * (p.abs().mean() + 1e-2))
        return model

    def save(model: torch.nn.Module, name: str, **train_args: object) -> Path:
        path = folder / name
        ckpt = {
            "model": deepcopy(model).half(),
            "ema": None,
            "train_args": train_args,
            "version": ultralytics.__version__,
        }
        torch.save(ckpt, path)
        return path

    return (
        save(base, "base.pt"),
        save(variant(range(10, 23)), "freeze10.pt", freeze=10),
        save(variant(range(22, 23)), "freeze22.pt", freeze=22),
    )


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    """n JPEGs with a few random coloured rectangles on a noisy background."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        image = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        for _ in range(3):
            x0, y0 = rng.integers(0, size * 3 // 4, 2)
            w, h = rng.integers(size // 10, size // 3, 2)
            image[y0 : y0 + h, x0 : x0 + w] = rng.integers(60, 255, 3)
        files.append(folder / f"{i:03d}.jpg")
        cv2.imwrite(str(files[-1]), image)
    return files


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the report's forked plot helper)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--out", type=Path, default=None, help="keep the report here (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="8 images at 160 px (CI's smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.n_images, args.imgsz = 8, 160

    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(work / "yolo-config"))
        os.environ.setdefault("YOLO_OFFLINE", "true")
        os.environ.setdefault("YOLO_AUTOINSTALL", "false")
        import torch

        from sweep.compare.analysis import Options, run_comparison
        from sweep.compare.checkpoints import load_checkpoint
        from sweep.compare.report import write_report

        setup = time.perf_counter()
        paths = make_checkpoints(work)
        images = make_images(work / "images", args.n_images, args.imgsz)
        print(f"setup (not timed): {time.perf_counter() - setup:.1f}s, torch threads: {torch.get_num_threads()}")

        start, cpu_start = time.perf_counter(), _cpu_seconds()
        base = load_checkpoint(paths[0], "base")
        variants = [load_checkpoint(p, p.stem) for p in paths[1:]]
        loaded = time.perf_counter() - start
        comparison = run_comparison(base, variants, Options(images=images, imgsz=args.imgsz))
        write_report(comparison, args.out or work / "report", "bench")
        total, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start

    stages = {"load checkpoints": loaded, **comparison.timings}
    width = max(map(len, stages))
    print(f"3 x yolov8s checkpoints, {args.n_images} images at {args.imgsz} px")
    for stage, seconds in stages.items():
        print(f"  {stage:<{width}}  {seconds:6.2f} s")
    print(f"  {'total':<{width}}  {total:6.2f} s  (target < {TARGET_S:.0f} s: {'ok' if total < TARGET_S else 'SLOW'})")
    # Wall time doubles or worse when other processes share the cores; CPU time barely moves.
    print(f"  {'CPU time':<{width}}  {cpu:6.2f} s  (all threads and processes; load average {os.getloadavg()[0]:.1f})")
    from bench.record import write_result

    figures = {
        "total_s": total,
        "cpu_s": cpu,
        "stages_s": stages,
        "load_average": os.getloadavg()[0],
        "goal": f"under {TARGET_S:.0f} s (3 YOLOv8s checkpoints, 64 images at 320 px)",
        "met": total < TARGET_S if not args.quick else None,
    }
    print(f"recorded: {write_result('compare', figures, {k: str(v) for k, v in vars(args).items()})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
