"""Calibration images: find them (folder, glob, list file or a dataset's val split) and load them.

Ultralytics (imported when first needed, after the caller set its environment) decides the rules: which files are images (`IMG_FORMATS`), how a dataset yaml
resolves its val split (`check_det_dataset`, without downloading), and how an image is
letterboxed (`LetterBox`: a square of `imgsz`, aspect kept, grey 114 padding). Images are then
scaled to [0, 1] RGB, as its predictor feeds them.
"""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
import torch

from sweep.compare.checkpoints import CompareError


def find_images(spec: str | Path) -> list[Path]:
    """Images in a folder (recursive), matching a glob, listed in a .txt file, or one image."""
    path = Path(spec)
    if path.is_dir():
        files = [f for f in path.rglob("*") if _is_image(f)]
    elif path.is_file() and path.suffix == ".txt":
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        files = [p if p.is_absolute() else path.parent / p for p in map(Path, lines)]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(f) for f in glob.glob(str(spec), recursive=True) if _is_image(Path(f))]
    if not files:
        raise CompareError(
            f"no images found at {str(spec)!r}: give a folder, a glob such as 'data/val/*.jpg', "
            "a .txt list of images or one image"
        )
    return sorted(files)


def val_images(data_yaml: str | Path) -> list[Path]:
    """The val images of an ultralytics dataset yaml, resolved by ultralytics (never downloaded)."""
    from ultralytics.data.utils import check_det_dataset

    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise CompareError(f"dataset yaml not found: {data_yaml}; pass calibration images with --images")
    try:
        data = check_det_dataset(data_yaml, autodownload=False)
    except Exception as e:  # ultralytics raises FileNotFoundError, SyntaxError, TypeError... for a bad yaml
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CompareError(f"{data_yaml}: {first_line}; pass calibration images with --images") from e
    split = data["val"]
    return [f for entry in (split if isinstance(split, list) else [split]) for f in find_images(entry)]


def pick(files: list[Path], n: int) -> list[Path]:
    """At most n files spread evenly over the sorted list (datasets are often sorted by scene)."""
    if len(files) <= n:
        return list(files)
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


def load_images(files: list[Path], imgsz: int) -> torch.Tensor:
    """A float batch (N, 3, imgsz, imgsz) in [0, 1], RGB."""
    from ultralytics.data.augment import LetterBox

    letterbox = LetterBox(new_shape=(imgsz, imgsz), auto=False)
    return torch.stack([torch.from_numpy(_chw_rgb(letterbox(image=_read_bgr(f)))) for f in files])


def _is_image(path: Path) -> bool:
    from ultralytics.data.utils import IMG_FORMATS

    return path.suffix[1:].lower() in IMG_FORMATS


def _chw_rgb(image: np.ndarray) -> np.ndarray:
    """HWC BGR uint8 -> CHW RGB float32 in [0, 1]."""
    return np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0


def _read_bgr(file: Path) -> np.ndarray:
    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        raise CompareError(f"cannot read image {file}")
    return image
