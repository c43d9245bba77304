"""A small, deterministic object-detection dataset with two related tasks.

"source" (circles, squares, triangles on dark noisy backgrounds) is what the demo base model is
pretrained on; "target" (crosses, rings, diamonds on light gradient backgrounds) is what the sweep
fine-tunes it on. Both need the same low-level features (edges, corners, colour blobs), so
transfer learning has something real to transfer, and freezing has a real cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

GENERATOR_VERSION = 1
TASKS = {
    "source": ("circle", "square", "triangle"),
    "target": ("cross", "ring", "diamond"),
}


@dataclass(frozen=True)
class DemoDataSpec:
    task: str
    n_train: int
    n_val: int
    imgsz: int
    seed: int

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return f"demo-{self.task}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def ensure_dataset(spec: DemoDataSpec, cache_dir: Path) -> Path:
    """Generate the dataset once under `cache_dir` and return its data yaml."""
    root = Path(cache_dir) / spec.key()
    data_yaml = root / "data.yaml"
    if data_yaml.exists():
        return data_yaml
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    rng = np.random.default_rng([spec.seed, list(TASKS).index(spec.task)])
    for split, n in (("train", spec.n_train), ("val", spec.n_val)):
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
        for i in range(n):
            image, labels = draw_image(rng, spec.task, spec.imgsz)
            cv2.imwrite(str(tmp / "images" / split / f"{i:05d}.png"), image)
            lines = [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in labels]
            (tmp / "labels" / split / f"{i:05d}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(TASKS[spec.task]))
    (tmp / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    try:
        tmp.rename(root)  # atomic: a parallel job that lost the race just uses the winner's copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return data_yaml


def draw_image(rng: np.random.Generator, task: str, size: int) -> tuple[np.ndarray, list[tuple]]:
    """One image with 1-4 non-overlapping objects, and its YOLO labels (class, cx, cy, w, h)."""
    image = _background(rng, task, size)
    labels: list[tuple] = []
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            s = int(rng.integers(size // 8, size // 3))
            x0, y0 = (int(v) for v in rng.integers(0, size - s, 2))
            box = (x0, y0, x0 + s, y0 + s)
            if all(_disjoint(box, other) for other in boxes):
                break
        else:
            continue
        cls = int(rng.integers(len(TASKS[task])))
        colour = tuple(int(c) for c in rng.integers(40, 256, 3))
        _draw_shape(image, TASKS[task][cls], box, colour)
        boxes.append(box)
        labels.append((cls, (box[0] + box[2]) / 2 / size, (box[1] + box[3]) / 2 / size, s / size, s / size))
    return image, labels


def _disjoint(a: tuple, b: tuple) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def _background(rng: np.random.Generator, task: str, size: int) -> np.ndarray:
    if task == "source":
        base = rng.integers(0, 60, 3)
        noise = rng.integers(0, 40, (size, size, 3))
        return np.clip(base + noise, 0, 255).astype(np.uint8)
    start, end = rng.integers(120, 230, 3), rng.integers(120, 230, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    image = start + (end - start) * ramp + rng.normal(0, 6, (size, size, 3))
    return np.clip(np.broadcast_to(image, (size, size, 3)), 0, 255).astype(np.uint8)


def _draw_shape(image: np.ndarray, shape: str, box: tuple[int, int, int, int], colour: tuple) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) // 2, (y0 + y1) // 2, (x1 - x0) // 2
    thick = max(2, r // 3)
    if shape == "circle":
        cv2.circle(image, (cx, cy), r, colour, -1)
    elif shape == "square":
        cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), colour, -1)
    elif shape == "triangle":
        cv2.fillPoly(image, [np.array([(cx, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)])], colour)
    elif shape == "cross":
        cv2.rectangle(image, (cx - thick // 2, y0), (cx + thick // 2, y1 - 1), colour, -1)
        cv2.rectangle(image, (x0, cy - thick // 2), (x1 - 1, cy + thick // 2), colour, -1)
    elif shape == "ring":
        cv2.circle(image, (cx, cy), r - thick // 2, colour, thick)
    elif shape == "diamond":
        cv2.fillPoly(image, [np.array([(cx, y0), (x1 - 1, cy), (cx, y1 - 1), (x0, cy)])], colour)
