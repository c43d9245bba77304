"""A data yaml checked with ultralytics' own loader: a bundled ultralytics definition (coco128.yaml,
VOC.yaml: downloaded when online), a local yaml file, or one a data source generated
(`sweep.sources`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweep.errors import ConfigError


@dataclass(frozen=True)
class DataInfo:
    name: str
    yaml: Path
    label: str  # how errors name the dataset: the option the user chose, or their own yaml file
    names: tuple[str, ...]
    train: tuple[Path, ...]
    val: tuple[Path, ...]

    @property
    def nc(self) -> int:
        return len(self.names)


def load_data_yaml(name: str, yaml: str | Path, label: str | None = None) -> DataInfo:
    """Check a data yaml with ultralytics' own loader; offline, a missing dataset is one clear line.
    `label` names it in errors (default: `data.yaml=<yaml>`)."""
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import ONLINE

    label = f"data.yaml={yaml}" if label is None else label
    try:
        data = check_det_dataset(str(yaml), autodownload=ONLINE)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = "" if ONLINE else " (offline: nothing can be downloaded)"
        raise ConfigError(
            f"{label} ({yaml}): {reason}{hint}; pass data.yaml=/path/to/data.yaml with local images"
        ) from None
    as_paths = lambda value: tuple(Path(p) for p in (value if isinstance(value, list) else [value]))  # noqa: E731
    return DataInfo(
        name,
        Path(data["yaml_file"]),
        label,
        tuple(data["names"].values()),
        as_paths(data["train"]),
        as_paths(data["val"]),
    )
