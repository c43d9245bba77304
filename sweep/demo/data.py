"""A small, deterministic object-detection dataset with two related tasks, as COCO is to VOC.

"source" is broad: ten shape classes in varied sizes, turns and colours on varied backgrounds (dark
and light; noise, gradients, stripes, checks, blotches). The demo base model is pretrained on it.
"target" is narrow: three new shapes built from the source's primitives (a cross from its bars, a
ring from its curves and outlines, a diamond from its corners and fills) on light gradients, one
of the source's backgrounds. The base's low-level features carry over but its classes do not, so
the sweep has something to fine-tune and freezing the backbone costs little, as in the tutorial.
"near" is the source's own kind of image with three of its classes, as VOC's classes are among
COCO's: everything the backbone learned carries over and only the new head has to learn (the
setting where freezing, fixed or adaptive, should cost no accuracy).
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

GENERATOR_VERSION = 3
TASKS = {
    "source": ("circle", "square", "frame", "triangle", "hexagon", "star", "saltire", "tee", "bar", "arc"),
    "target": ("cross", "ring", "diamond"),
    "near": ("circle", "star", "triangle"),
}
DRAWN_AS_SOURCE = ("source", "near")  # any background, light or dark, the source's sizes and turns
SOURCE_BACKGROUNDS = ("noise", "gradient", "stripes", "checks", "blotches")
MIN_CONTRAST = 60  # mean grey-level gap between an object and the background under it


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
    """Generate the dataset once under `cache_dir` and return its data yaml.

    The yaml has no `path:` key, so ultralytics resolves `images/...` against the yaml's own folder:
    a copied folder reads its own images.
    """
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
    (tmp / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames:\n{names}\n")
    try:
        tmp.rename(root)  # atomic: a parallel job that lost the race just uses the winner's copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return data_yaml


def draw_image(rng: np.random.Generator, task: str, size: int) -> tuple[np.ndarray, list[tuple]]:
    """One image with 1-4 non-overlapping objects, and its YOLO labels (class, cx, cy, w, h)."""
    image = _background(rng, task, size)
    lo, hi = (size // 10, size * 2 // 5) if task in DRAWN_AS_SOURCE else (size // 8, size // 3)
    labels: list[tuple] = []
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            s = int(rng.integers(lo, hi))
            x0, y0 = (int(v) for v in rng.integers(0, size - s, 2))
            box = (x0, y0, x0 + s, y0 + s)
            if all(_disjoint(box, other) for other in boxes):
                break
        else:
            continue
        cls = int(rng.integers(len(TASKS[task])))
        mask = _shape_mask(rng, TASKS[task][cls], box, size)
        ys, xs = np.nonzero(mask)
        image[mask] = _contrasting_colour(rng, image[mask])
        boxes.append(box)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        labels.append((cls, (x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size))
    return image, labels


def _disjoint(a: tuple, b: tuple) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def _background(rng: np.random.Generator, task: str, size: int) -> np.ndarray:
    """Source (and near): any of five families, dark or light. Target: light gradients, one of the source's."""
    broad = task in DRAWN_AS_SOURCE
    kind = SOURCE_BACKGROUNDS[int(rng.integers(len(SOURCE_BACKGROUNDS)))] if broad else "gradient"
    light = task == "target" or rng.random() < 0.5
    low, high = (120, 230) if light else (0, 110)
    a, b = rng.integers(low, high, 3), rng.integers(low, high, 3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "noise":
        mix = np.zeros((size, size))
    elif kind == "gradient":
        angle = rng.uniform(0, np.pi) if broad else 0.0
        mix = (np.cos(angle) * yy + np.sin(angle) * xx) / (abs(np.cos(angle)) + abs(np.sin(angle)))
        mix -= mix.min()
    elif kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16) / size
        mix = (np.cos(2 * np.pi * (np.cos(angle) * yy + np.sin(angle) * xx) / period) + 1) / 2 * 0.5
    elif kind == "checks":
        cell = int(rng.integers(4, 17))
        mix = ((np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2) * 0.4
    else:
        mix = cv2.resize(rng.random((4, 4)), (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    image = a + (b - a) * mix[..., None] + rng.normal(0, rng.uniform(3, 15), (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, shape: str, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Where `shape` covers the image: drawn inside `box`, turned by up to 15 degrees."""
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    thick = max(2, int(r * rng.uniform(0.25, 0.45)))
    turn = np.deg2rad(rng.uniform(-15, 15) + (45 if shape == "saltire" else 0))  # a saltire is a turned cross
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])

    def poly(points: np.ndarray | list[tuple[float, float]]) -> np.ndarray:
        xy = np.asarray(points) @ rot.T * r + (cx, cy)
        return np.round(xy).astype(np.int32)

    def bar(w: float, h: float) -> np.ndarray:
        return poly([(-w, -h), (w, -h), (w, h), (-w, h)])

    mask = np.zeros((size, size), np.uint8)
    centre, radius, half = (round(cx), round(cy)), round(r), thick / 2 / r
    if shape == "circle":
        cv2.circle(mask, centre, radius, 1, -1)
    elif shape == "ring":
        cv2.circle(mask, centre, round(r - thick / 2), 1, thick)
    elif shape == "square":
        cv2.fillPoly(mask, [bar(0.8, 0.8)], 1)
    elif shape == "frame":
        cv2.fillPoly(mask, [bar(0.8, 0.8)], 1)
        cv2.fillPoly(mask, [bar(0.8 - 2 * half, 0.8 - 2 * half)], 0)
    elif shape in ("cross", "saltire"):
        cv2.fillPoly(mask, [bar(half, 1), bar(1, half)], 1)
    elif shape == "tee":
        cv2.fillPoly(mask, [bar(half, 1), poly([(-1, -1), (1, -1), (1, 2 * half - 1), (-1, 2 * half - 1)])], 1)
    elif shape == "bar":
        cv2.fillPoly(mask, [bar(1, 1.5 * half)], 1)
    elif shape == "arc":
        cv2.ellipse(mask, centre, (round(r - thick / 2),) * 2, np.rad2deg(turn), 180, 360, 1, thick)
    elif shape == "diamond":
        cv2.fillPoly(mask, [poly([(0, -1), (0.6, 0), (0, 1), (-0.6, 0)])], 1)
    elif shape == "triangle":
        cv2.fillPoly(mask, [poly([(0, -1), (0.95, 0.75), (-0.95, 0.75)])], 1)
    else:
        corners = 10 if shape == "star" else 6
        radii = np.where(np.arange(corners) % 2, 0.45, 1.0) if shape == "star" else np.ones(corners)
        angles = np.arange(corners) * 2 * np.pi / corners - np.pi / 2
        cv2.fillPoly(mask, [poly(np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1))], 1)
    return mask.astype(bool)


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour whose grey level stands at least MIN_CONTRAST away from the pixels it covers."""
    grey = under.mean()
    for _attempt in range(50):
        colour = rng.integers(0, 256, 3)
        if abs(colour.mean() - grey) >= MIN_CONTRAST:
            return colour.astype(np.uint8)
    return np.full(3, 0 if grey > 127 else 255, np.uint8)
