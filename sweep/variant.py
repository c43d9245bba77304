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

from sweep.auto_freeze import AUTO, AutoFreeze, resolve_auto_freeze
from sweep.checkpoints import DEMO, checkpoint_identity, model_yaml_of, resolve_checkpoint
from sweep.console import ultralytics_quiet
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
from sweep.schedule import FreezeSchedule, check_single_device, resolve_schedule, value_label
from sweep.training import resolve_cpu_threads, resolve_cpu_workers

POSITIVE_TRAIN_KEYS = ("epochs", "imgsz")
CPU_DEVICES = ("cpu", "mps")  # where ultralytics trains without loader workers or AutoBatch
DEFAULT_CPU_BATCH = 16  # what AutoBatch gives on them (ultralytics' default `batch`)


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
    params: ParameterCounts  # counted for the first stage of a schedule
    train_args: dict = field(default_factory=dict)  # ultralytics train kwargs, device resolved
    schedule: FreezeSchedule | None = None  # freeze first, unfreeze later; None: `freeze` throughout
    cpu_threads: int | None = None  # torch threads on CPU (speed only: not part of the identity)
    auto_freeze: AutoFreeze | None = None  # freeze=auto: its rule; freeze_layers is where it starts
    cpu_workers: bool = False  # loader processes on CPU too (speed only)

    @property
    def switches(self) -> bool:
        return self.schedule is not None and self.schedule.switches

    @property
    def freeze_label(self) -> str:
        if self.auto_freeze:
            return self.auto_freeze.label
        return self.schedule.label if self.switches else value_label(self.freeze)

    @property
    def run_name(self) -> str:
        """What differs first, so the runs table shows it: `backbone 10/23 · yolov8n-demo`."""
        frozen = f"{len(self.freeze_layers)}/{self.architecture.num_layers}"
        label = "" if isinstance(self.freeze, int) and not self.switches else f"{self.freeze_label} "
        return f"{label}{frozen} · {self.model_name}"

    def config_hash(self) -> str:
        """Identity of the experiment: what it starts from, trains on, freezes and how it trains."""
        identity = {
            "arch": self.arch,
            "weights": self.weights,
            "checkpoint": self._checkpoint_identity(),
            "data": str(self.data.yaml),
            "freeze_layers": list(self.freeze_layers),
            "train": {k: v for k, v in self.train_args.items() if k not in ("device", "workers")},
        }
        if self.switches:  # fixed freezing keeps the hash it always had
            identity["freeze_schedule"] = self.schedule.as_param()
        if self.auto_freeze:
            identity["freeze_auto"] = self.auto_freeze.as_param()
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _checkpoint_identity(self) -> str:
        """The checkpoint's content; the demo base's cache key (its config) before it is built."""
        if self.checkpoint is None:
            return ""
        if self.weights == DEMO:
            return self.checkpoint.parent.parent.name
        return checkpoint_identity(self.checkpoint)


def build_variant(cfg: DictConfig) -> VariantSpec:
    """Validate and resolve a composed config. Raises ConfigError with one line on bad input."""
    cpu_workers = resolve_cpu_workers(OmegaConf.select(cfg, "sweep.cpu_workers", default=False))
    train_args = resolve_train_args(cfg.train, cpu_workers)
    cpu_threads = resolve_cpu_threads(OmegaConf.select(cfg, "sweep.cpu_threads"))
    weights = "" if cfg.model.weights is None else str(cfg.model.weights)
    if weights == DEMO:  # built after validation, at a path known now
        from sweep.demo.base import base_checkpoint

        checkpoint = base_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
        model_yaml = _load_arch_yaml(cfg.model.arch)
    else:
        checkpoint = resolve_checkpoint(weights)
        model_yaml = model_yaml_of(checkpoint) if checkpoint else _load_arch_yaml(cfg.model.arch)
    architecture = architecture_of(model_yaml, cfg.model.name)
    data = resolve_data(cfg.data, Path(cfg.paths.cache_dir))
    check_dataset_files(data)
    freeze = cfg.freeze
    if OmegaConf.is_list(freeze):  # ultralytics silently freezes nothing for a ListConfig
        freeze = OmegaConf.to_container(freeze)
    model = _build_model(model_yaml, data.nc)
    check_imgsz(train_args["imgsz"], model)
    epochs = train_args["epochs"]
    auto = _auto_freeze(cfg, architecture, epochs, model, train_args["device"]) if freeze == AUTO else None
    start = auto.start if auto else freeze
    layers = resolve_freeze(start, architecture)
    schedule = resolve_schedule(start, cfg.unfreeze_epoch, cfg.freeze_schedule, architecture, epochs, model)
    check_single_device(schedule, train_args["device"])
    if schedule is not None:
        layers = list(schedule.first_layers)  # what ultralytics' own `freeze=` gets
    params = count_parameters(model, layers)
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
        schedule=schedule,
        cpu_threads=cpu_threads,
        auto_freeze=auto,
        cpu_workers=cpu_workers,
    )


def _auto_freeze(cfg: DictConfig, architecture: Architecture, epochs: int, model, device: str) -> AutoFreeze:
    for key in ("unfreeze_epoch", "freeze_schedule"):
        if cfg[key] is not None:
            raise ConfigError(
                f"freeze=auto with {key} set: auto decides when layers freeze (set where it starts with "
                "freeze_auto.start); use one of the two"
            )
    return resolve_auto_freeze(cfg.freeze_auto, architecture, epochs, model, device)


def resolve_train_args(train_cfg: DictConfig, cpu_workers: bool = False) -> dict:
    """The ultralytics train arguments, checked as the trainer would check them, device resolved;
    `cpu_workers` (`sweep.cpu_workers`) keeps `workers` on CPU, where the sweep puts it back."""
    args = OmegaConf.to_container(train_cfg, resolve=True)
    for key in POSITIVE_TRAIN_KEYS:
        value = args[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"train.{key}={value!r} is not valid: use a positive integer")
    check_batch(args["batch"])
    check_ultralytics_args({k: v for k, v in args.items() if k != "device"})
    check_optimizer(args["optimizer"])
    args["device"] = resolve_device(args["device"])
    check_device(args["device"])
    return as_the_trainer_runs(args, cpu_workers)


def as_the_trainer_runs(args: dict, cpu_workers: bool = False) -> dict:
    """The values the trainer would change without a word, refused or recorded as it will use them.

    On CPU (and Apple's MPS) ultralytics' trainer sets `workers=0` and AutoBatch falls back to a
    batch of 16 (engine/trainer.py, utils/autobatch.py): `workers` is recorded as 0 (it is no
    part of the config hash) unless `sweep.cpu_workers` puts them back, an AutoBatch request is refused.
    """
    if args["device"] not in CPU_DEVICES:
        return args
    batch = args["batch"]
    if isinstance(batch, float) or batch == -1:
        raise ConfigError(
            f"train.batch={batch!r}: AutoBatch needs a CUDA GPU; on train.device={args['device']} ultralytics would "
            f"train with batch {DEFAULT_CPU_BATCH}: give a batch size"
        )
    return args if cpu_workers else {**args, "workers": 0}


def check_imgsz(imgsz: int, model) -> None:
    """ultralytics rounds `imgsz` up to a multiple of the model's largest stride (at least 32), with
    its own `check_imgsz`: a value it would change is refused, naming the one it would use."""
    from ultralytics.utils.checks import check_imgsz as trainer_imgsz

    stride = max(int(model.stride.max()), 32)
    with ultralytics_quiet():
        used = trainer_imgsz(imgsz, stride=stride, floor=stride, max_dim=1)
    if used != imgsz:
        raise ConfigError(
            f"train.imgsz={imgsz}: ultralytics would train at {used} (a multiple of the model's stride {stride}); "
            f"use train.imgsz={used}"
        )


def check_batch(batch: object) -> None:
    """ultralytics takes a batch size, -1 for AutoBatch, or a fraction of GPU memory in (0, 1)."""
    if isinstance(batch, bool) or not (
        (isinstance(batch, int) and (batch > 0 or batch == -1)) or (isinstance(batch, float) and 0 < batch < 1)
    ):
        raise ConfigError(
            f"train.batch={batch!r} is not valid: use a positive integer, -1 (AutoBatch) or a GPU memory fraction in (0, 1)"
        )


def check_optimizer(name: object) -> None:
    """The trainer's own optimizer check (its `build_optimizer`), run on a one-layer model now
    rather than after the dataset is loaded."""
    if str(name).lower() == "auto":
        return
    from types import SimpleNamespace

    from torch import nn
    from ultralytics.engine.trainer import BaseTrainer

    try:
        with ultralytics_quiet():
            BaseTrainer.build_optimizer(SimpleNamespace(args=None, data={}), nn.Conv2d(1, 1, 1), name=str(name))
    except NotImplementedError as error:
        raise ConfigError(f"train.optimizer={name}: {str(error).splitlines()[0]}") from None


def check_device(device: str) -> None:
    """ultralytics' own device check: a GPU that is not there fails now, not when training starts."""
    from ultralytics.utils.torch_utils import select_device

    try:
        select_device(device, verbose=False)
    except ValueError as error:
        import torch

        available = ", ".join(["cpu", *map(str, range(torch.cuda.device_count()))])
        raise ConfigError(
            f"train.device={device}: {str(error).splitlines()[0]} (available here: {available})"
        ) from None


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
    """An explicit value wins; else the CPU without a GPU, else GPU 0 for validation (each job
    then leases a free GPU of its own: sweep/gpu_lease.py)."""
    if device is not None and str(device) != "":
        return str(device)
    import torch

    return "0" if torch.cuda.device_count() else "cpu"


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

    with ultralytics_quiet():
        return DetectionModel(model_yaml, nc=nc, verbose=False)


def describe_layers(layers: tuple[int, ...]) -> str:
    """`0..9` for a range, `0,3,5` otherwise, `none` for no layer."""
    if not layers:
        return "none"
    if layers == tuple(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ",".join(map(str, layers))


def describe(spec: VariantSpec) -> str:
    p = spec.params
    return (
        f"{spec.run_name}: freeze={spec.freeze_label} -> layers {describe_layers(spec.freeze_layers)} "
        f"({len(spec.freeze_layers)}/{spec.architecture.num_layers} frozen); parameters: {p.trainable:,} trainable, "
        f"{p.frozen:,} frozen of {p.total:,} ({p.trainable_pct:.1f}% trainable)"
    )
