"""Calibration images: find them (folder, glob, list file or a dataset's val split) and load them.

Images are letterboxed to a square of `imgsz` (aspect kept, grey 114 padding) and scaled to
[0, 1] RGB, as ultralytics' validator feeds them.
"""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from sweep.compare.checkpoints import CompareError

IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}


def find_images(spec: str | Path) -> list[Path]:
    """Images in a folder (recursive), matching a glob, listed in a .txt file, or one image."""
    path = Path(spec)
    if path.is_dir():
        files = [f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES]
    elif path.is_file() and path.suffix == ".txt":
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        files = [p if p.is_absolute() else path.parent / p for p in map(Path, lines)]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(f) for f in glob.glob(str(spec), recursive=True) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise CompareError(
            f"no images found at {str(spec)!r}: give a folder, a glob such as 'data/val/*.jpg', "
            "a .txt list of images or one image"
        )
    return sorted(files)


def val_images(data_yaml: str | Path) -> list[Path]:
    """The val (else test) images of an ultralytics dataset yaml, resolved as ultralytics does."""
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise CompareError(f"dataset yaml not found: {data_yaml}; pass calibration images with --images")
    data = yaml.safe_load(data_yaml.read_text()) or {}
    split = data.get("val") or data.get("test")
    if not split:
        raise CompareError(f"{data_yaml} names no 'val' or 'test' images; pass --images")
    root = _dataset_root(data_yaml, data.get("path"))
    files: list[Path] = []
    for entry in split if isinstance(split, list) else [split]:
        entry_path = Path(entry)
        files += find_images(entry_path if entry_path.is_absolute() else root / entry_path)
    return files


def pick(files: list[Path], n: int) -> list[Path]:
    """At most n files spread evenly over the sorted list (datasets are often sorted by scene)."""
    if len(files) <= n:
        return list(files)
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


def load_images(files: list[Path], imgsz: int) -> torch.Tensor:
    """A float batch (N, 3, imgsz, imgsz) in [0, 1], RGB."""
    return torch.stack([torch.from_numpy(letterbox(_read_rgb(f), imgsz)) for f in files])


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to fit a size x size square keeping aspect ratio, pad with grey; CHW float32."""
    h, w = image.shape[:2]
    r = size / max(h, w)
    new_w, new_h = max(1, round(w * r)), max(1, round(h * r))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), 114, dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _read_rgb(file: Path) -> np.ndarray:
    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        raise CompareError(f"cannot read image {file}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _dataset_root(data_yaml: Path, path: str | None) -> Path:
    """The dataset's `path`: as given, next to the yaml, or under ultralytics' datasets_dir."""
    if not path:
        return data_yaml.parent
    root = Path(path)
    if root.is_absolute():
        return root
    from ultralytics.utils import SETTINGS

    for candidate in (root, data_yaml.parent / root, Path(SETTINGS["datasets_dir"]) / root):
        if candidate.exists():
            return candidate
    return root
