"""Check a dataset's files before any training, with ultralytics' own rules.

The trainer skips a corrupt image or label line with a warning deep into a run; a sweep refuses
it up front, naming the file. Every rule is the trainer's: `verify_image_label` is the function
its dataset loader calls on each image-label pair.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sweep.datasets import DataInfo
from sweep.errors import ConfigError

CORRUPT = "ignoring corrupt image/label: "
# ultralytics falls back to a HEIF plugin for a file PIL cannot identify; offline, the plugin's
# import error would hide the real cause.
UNIDENTIFIED = "No module named 'pi_heif'"


def image_files(source: Path) -> list[Path]:
    """Images of a split given as a folder or a .txt list, as ultralytics reads them."""
    from ultralytics.data.utils import IMG_FORMATS

    if source.suffix == ".txt" and source.is_file():
        root = source.parent
        lines = [line.strip() for line in source.read_text().splitlines() if line.strip()]
        return [(root / line).resolve() if not Path(line).is_absolute() else Path(line) for line in lines]
    return sorted(p for p in source.rglob("*") if p.suffix.lower().lstrip(".") in IMG_FORMATS)


def check_dataset_files(data: DataInfo) -> None:
    """Raise ConfigError for an empty split, a split without a single labelled box, or an image or
    label the trainer would drop.

    Checked once per process and dataset state: the variants of a sweep share their data.
    """
    _check_once(data, data.yaml.stat().st_mtime_ns)


@functools.cache
def _check_once(data: DataInfo, _yaml_mtime: int) -> None:
    from ultralytics.data.utils import img2label_paths, verify_image_label

    for split, sources in (("train", data.train), ("val", data.val)):
        images = [str(image) for source in sources for image in image_files(source)]
        if not images:
            raise ConfigError(f"{data.label}: the {split} split has no images ({', '.join(map(str, sources))})")
        jobs = [
            (image, label, "", False, data.nc, 0, 0, False)
            for image, label in zip(images, img2label_paths(images), strict=True)
        ]
        boxes = 0
        with ThreadPoolExecutor(max_workers=4) as pool:
            for result in pool.map(verify_image_label, jobs):
                corrupt, message = result[8], result[9]
                if corrupt:
                    reason = message.replace(CORRUPT, "").replace(UNIDENTIFIED, "corrupt image, not a format PIL reads")
                    raise ConfigError(f"{data.label}: {reason} (the trainer would skip it)")
                boxes += len(result[1])
        if not boxes:  # the trainer only warns ("Labels are missing or empty") and learns background
            raise ConfigError(
                f"{data.label}: the {split} split has {len(images)} images but no labelled box (every label file "
                f"is empty or missing, e.g. {jobs[0][1]}); give labels in YOLO format (class x y w h)"
            )
