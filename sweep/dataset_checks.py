"""Check a dataset's files before any training: ultralytics would skip bad images or labels with
a warning deep into a run; a sweep should refuse them up front, naming the file.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sweep.datasets import DataInfo
from sweep.errors import ConfigError


def image_files(source: Path) -> list[Path]:
    """Images of a split given as a folder or a .txt list, as ultralytics reads them."""
    from ultralytics.data.utils import IMG_FORMATS

    if source.suffix == ".txt" and source.is_file():
        root = source.parent
        lines = [line.strip() for line in source.read_text().splitlines() if line.strip()]
        return [(root / line).resolve() if not Path(line).is_absolute() else Path(line) for line in lines]
    return sorted(p for p in source.rglob("*") if p.suffix.lower().lstrip(".") in IMG_FORMATS)


def check_dataset_files(data: DataInfo) -> None:
    """Raise ConfigError for an empty split, a corrupt image or an out-of-range label.

    Checked once per process and dataset state: the variants of a sweep share their data.
    """
    _check_once(data, data.yaml.stat().st_mtime_ns)


@functools.cache
def _check_once(data: DataInfo, _yaml_mtime: int) -> None:
    from ultralytics.data.utils import img2label_paths

    for split, sources in (("train", data.train), ("val", data.val)):
        images = [image for source in sources for image in image_files(source)]
        if not images:
            raise ConfigError(f"data={data.name}: the {split} split has no images ({', '.join(map(str, sources))})")
        with ThreadPoolExecutor(max_workers=4) as pool:
            for problem in pool.map(_image_problem, images):
                if problem:
                    raise ConfigError(f"data={data.name}: {problem}")
        for label in map(Path, img2label_paths([str(i) for i in images])):
            problem = _label_problem(label, data.nc)
            if problem:
                raise ConfigError(f"data={data.name}: {problem}")


def _image_problem(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for a broken file
        return f"corrupt image {path} ({type(error).__name__})"
    return None


def _label_problem(path: Path, nc: int) -> str | None:
    """Boxes `class cx cy w h` (or polygons) with class in [0, nc) and coordinates in [0, 1]."""
    if not path.is_file():
        return None  # an image without a label file is a background image
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls, *coords = int(fields[0]), *map(float, fields[1:])
        except ValueError:
            return f"label {path}:{number} is not numbers: {line.strip()!r}"
        if not 0 <= cls < nc:
            return f"label {path}:{number} has class id {cls}, outside the dataset's {nc} classes (0..{nc - 1})"
        if len(coords) < 4 or any(not 0.0 <= c <= 1.0 for c in coords):
            return f"label {path}:{number} has coordinates outside [0, 1] or missing: {line.strip()!r}"
    return None
