"""Resolve `data` to a checked ultralytics data yaml: the generated demo, a bundled ultralytics
definition (coco128.yaml, VOC.yaml: downloaded when online), or a local yaml file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from sweep.errors import ConfigError

DEMO = "demo"


@dataclass(frozen=True)
class DataInfo:
    name: str
    yaml: Path
    given: str  # data.yaml as configured: an option, a bundled name, or a path
    names: tuple[str, ...]
    train: tuple[Path, ...]
    val: tuple[Path, ...]

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def label(self) -> str:
        """How errors name the dataset: the option the user chose, or their own yaml file."""
        return data_label(self.name, self.given)


def data_label(name: str, given: str) -> str:
    """How errors name the dataset: the generated demo by its option, any other by its yaml."""
    return f"data={name}" if given == DEMO else f"data.yaml={given}"


def resolve_data(data_cfg: DictConfig, cache_dir: Path) -> DataInfo:
    if data_cfg.yaml == DEMO:
        from sweep.demo.data import DemoDataSpec, ensure_dataset

        spec = DemoDataSpec("target", data_cfg.n_train, data_cfg.n_val, data_cfg.imgsz, data_cfg.seed)
        return load_data_yaml(data_cfg.name, ensure_dataset(spec, cache_dir), given=DEMO)
    return load_data_yaml(data_cfg.name, data_cfg.yaml)


def load_data_yaml(name: str, yaml: str | Path, given: str | None = None) -> DataInfo:
    """Check a data yaml with ultralytics' own loader; offline, a missing dataset is one clear line."""
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import ONLINE

    given = str(yaml) if given is None else given
    label = data_label(name, given)
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
        given,
        tuple(data["names"].values()),
        as_paths(data["train"]),
        as_paths(data["val"]),
    )
