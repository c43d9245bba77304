"""One variant of a sweep, resolved and validated from its Hydra config before anything trains.

A `VariantSpec` holds everything a training needs and nothing about where it is tracked, so its
hash identifies "the same experiment" across re-runs of a sweep.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sweep.checkpoints import DEMO, model_yaml_of, resolve_checkpoint
from sweep.dataset_checks import check_dataset_files
from sweep.datasets import DataInfo, resolve_data
from sweep.errors import ConfigError
from sweep.freeze import (
    Architecture,
    ParameterCounts,
    architecture_of,
    check_trainable,
    count_parameters,
    resolve_freeze,
)

POSITIVE_TRAIN_KEYS = ("epochs", "imgsz", "batch")
OWN_TRAIN_KEYS = ("device", "extra")  # resolved or merged by us, not passed as they are


@dataclass(frozen=True)
class VariantSpec:
    model_name: str
    arch: str  # architecture yaml (bundled name or path)
    weights: str  # as configured: a path, an official name, "demo", or "" for scratch
    checkpoint: Path | None  # resolved starting checkpoint; None until the demo base is built
    data: DataInfo
    freeze: object  # as given by the user
    freeze_layers: tuple[int, ...]
    architecture: Architecture
    params: ParameterCounts
    train_args: dict = field(default_factory=dict)  # ultralytics train kwargs, device resolved

    @property
    def freeze_label(self) -> str:
        if isinstance(self.freeze, (list, tuple)):
            return "[" + ",".join(str(i) for i in self.freeze) + "]"
        return str(self.freeze)

    @property
    def run_name(self) -> str:
        return f"{self.model_name}-freeze-{self.freeze_label}"

    def config_hash(self) -> str:
        """Identity of the experiment: what it starts from, trains on, freezes and how it trains."""
        identity = {
            "arch": self.arch,
            "weights": self.weights,
            "checkpoint": _file_identity(self.checkpoint),
            "data": str(self.data.yaml),
            "freeze_layers": list(self.freeze_layers),
            "train": {k: v for k, v in self.train_args.items() if k not in ("device", "workers")},
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_identity(path: Path | None) -> str:
    if path is None:
        return ""
    stat = path.stat()
    return f"{path.name}:{stat.st_size}"


def build_variant(cfg: DictConfig) -> VariantSpec:
    """Validate and resolve a composed config. Raises ConfigError with one line on bad input."""
    train_args = resolve_train_args(cfg.train)
    weights = "" if cfg.model.weights is None else str(cfg.model.weights)
    checkpoint = None if weights == DEMO else resolve_checkpoint(weights)
    model_yaml = model_yaml_of(checkpoint) if checkpoint else _load_arch_yaml(cfg.model.arch)
    architecture = architecture_of(model_yaml, cfg.model.name)
    data = resolve_data(cfg.data, Path(cfg.paths.cache_dir))
    check_dataset_files(data)
    freeze = cfg.freeze
    if OmegaConf.is_list(freeze):  # ultralytics silently freezes nothing for a ListConfig
        freeze = OmegaConf.to_container(freeze)
    layers = resolve_freeze(freeze, architecture)
    params = count_parameters(_build_model(model_yaml, data.nc), layers)
    check_trainable(params, freeze, architecture)
    return VariantSpec(
        model_name=str(cfg.model.name),
        arch=str(cfg.model.arch),
        weights=weights,
        checkpoint=checkpoint,
        data=data,
        freeze=freeze,
        freeze_layers=tuple(layers),
        architecture=architecture,
        params=params,
        train_args=train_args,
    )


def resolve_train_args(train_cfg: DictConfig) -> dict:
    train = OmegaConf.to_container(train_cfg, resolve=True)
    for key in POSITIVE_TRAIN_KEYS:
        value = train[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"train.{key}={value!r} is not valid: use a positive integer")
    args = {k: v for k, v in train.items() if k not in OWN_TRAIN_KEYS}
    args.update(train.get("extra") or {})
    check_ultralytics_args(args)
    args["device"] = resolve_device(train["device"])
    return args


def check_ultralytics_args(args: dict) -> None:
    """Ultralytics' own argument check, run now rather than when the variant starts training."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, get_cfg

    unknown = sorted(set(args) - set(DEFAULT_CFG_DICT))
    if unknown:
        raise ConfigError(f"train: {', '.join(unknown)} is not an ultralytics training argument (see `yolo cfg`)")
    try:
        get_cfg(overrides=dict(args))
    except (SyntaxError, TypeError, ValueError) as error:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ConfigError(f"train: {first} (see `yolo cfg` for ultralytics' training arguments)") from None


def resolve_device(device: object) -> str:
    """An explicit value wins; else the CPU without a GPU, else one GPU per job in turn.

    Round-robin by Hydra job number: with a parallel launcher (joblib, 4 workers, 4 GPUs) each
    variant gets a GPU of its own; on SLURM each job sees only its own GPU, so it gets GPU 0.
    """
    if device is not None and str(device) != "":
        return str(device)
    import torch

    count = torch.cuda.device_count()
    return str(_job_number() % count) if count else "cpu"


def _job_number() -> int:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return 0
    hc = HydraConfig.get()
    return int(hc.job.get("num") or 0) if hc.mode == RunMode.MULTIRUN else 0


def _load_arch_yaml(arch: str) -> dict:
    from ultralytics.nn.tasks import yaml_model_load

    try:
        return yaml_model_load(arch)
    except Exception as error:
        raise ConfigError(
            f"model.arch={arch}: not a readable model yaml ({type(error).__name__}); "
            "use a bundled one such as yolov8n.yaml or a path to your own"
        ) from None


def _build_model(model_yaml: dict, nc: int):
    """The network the trainer will build: same yaml, the dataset's class count."""
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(model_yaml, nc=nc, verbose=False)


def describe(spec: VariantSpec) -> str:
    layers = spec.freeze_layers
    shown = (
        "none"
        if not layers
        else f"{layers[0]}..{layers[-1]}"
        if layers == tuple(range(layers[0], layers[-1] + 1))
        else ",".join(map(str, layers))
    )
    p = spec.params
    return (
        f"{spec.run_name}: freeze={spec.freeze_label} -> layers {shown} "
        f"({len(layers)}/{spec.architecture.num_layers} frozen); parameters: {p.trainable:,} trainable, "
        f"{p.frozen:,} frozen of {p.total:,} ({p.trainable_pct:.1f}% trainable)"
    )
