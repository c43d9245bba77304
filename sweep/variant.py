"""The one door from config to code: `resolve(cfg)` turns a job's composed Hydra config into plain,
typed values, validated before anything trains or is recorded. Nothing below it reads the config.

A `VariantSpec` holds everything a training needs and nothing about where it is tracked, so its
hash identifies "the same experiment" across re-runs of a sweep; `JobSettings` holds how the job
runs and where it is tracked.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sweep.auto_freeze import AUTO, AutoFreeze, resolve_auto_freeze
from sweep.console import ultralytics_quiet
from sweep.dataset_checks import check_dataset_files
from sweep.datasets import DataInfo
from sweep.errors import ConfigError
from sweep.files import write_atomic
from sweep.freeze import (
    Architecture,
    ParameterCounts,
    architecture_of,
    check_trainable,
    count_parameters,
    resolve_freeze,
)
from sweep.schedule import FreezeSchedule, check_single_device, resolve_schedule, value_label
from sweep.sources import WeightsSource, data_source, weights_source
from sweep.tracking.credentials import redact
from sweep.training import resolve_cpu_threads, resolve_cpu_workers

ON_HELD = ("wait", "skip")
POSITIVE_TRAIN_KEYS = ("epochs", "imgsz")
CPU_DEVICES = ("cpu", "mps")  # where ultralytics trains without loader workers or AutoBatch
DEFAULT_CPU_BATCH = 16  # what AutoBatch gives on them (ultralytics' default `batch`)


@dataclass(frozen=True)
class VariantSpec:
    model_name: str
    arch: str  # architecture yaml (bundled name or path)
    weights: str  # as configured: a path, an official name, a named source, or "" for scratch
    checkpoint: Path | None  # the starting checkpoint (a built source's is there once `ensure`d); None: scratch
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
    weights_source: WeightsSource | None = None  # where `checkpoint` comes from; makes it ready

    @property
    def device(self) -> str:
        """Where it trains: `train.device` resolved, or the GPU its job leased."""
        return self.train_args["device"]

    def on_device(self, device: str) -> VariantSpec:
        """The same variant on another device of the same kind (a leased GPU): the hash is unchanged."""
        return replace(self, train_args={**self.train_args, "device": device})

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
        """The checkpoint's content, or what identifies a built source's before it is built."""
        if self.checkpoint is None or self.weights_source is None:
            return ""
        return self.weights_source.identity()


def plain(node: object) -> object:
    """A config node as plain Python values, interpolations resolved (ultralytics silently freezes
    nothing for a ListConfig `freeze`)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def resolve(cfg: DictConfig) -> VariantSpec:
    """Validate and resolve a composed config. Raises ConfigError with one line on bad input."""
    sweep = plain(cfg.get("sweep")) or {}
    cache_dir = Path(cfg.paths.cache_dir)
    cpu_workers = resolve_cpu_workers(sweep.get("cpu_workers", False))
    train_args = resolve_train_args(plain(cfg.train), cpu_workers)
    cpu_threads = resolve_cpu_threads(sweep.get("cpu_threads"))
    model_cfg = plain(cfg.model)
    source = weights_source(model_cfg, cache_dir)  # a source built in training (the demo base) is not built yet
    model_yaml = source.model_yaml()
    architecture = architecture_of(model_yaml, model_cfg["name"])
    data = data_source(plain(cfg.data), cache_dir)
    check_dataset_files(data)
    freeze = plain(cfg.freeze)
    model = _build_model(model_yaml, data.nc)
    check_imgsz(train_args["imgsz"], model)
    epochs = train_args["epochs"]
    unfreeze_epoch, freeze_schedule = plain(cfg.unfreeze_epoch), plain(cfg.freeze_schedule)
    auto = None
    if freeze == AUTO:
        auto = _auto_freeze(
            plain(cfg.freeze_auto), unfreeze_epoch, freeze_schedule, architecture, epochs, model, train_args["device"]
        )
    start = auto.start if auto else freeze
    layers = resolve_freeze(start, architecture)
    schedule = resolve_schedule(start, unfreeze_epoch, freeze_schedule, architecture, epochs, model)
    check_single_device(schedule, train_args["device"])
    if schedule is not None:
        layers = list(schedule.first_layers)  # what ultralytics' own `freeze=` gets
    params = count_parameters(model, layers)
    check_trainable(params, freeze, architecture)
    return VariantSpec(
        model_name=str(model_cfg["name"]),
        arch=str(model_cfg["arch"]),
        weights=source.given,
        checkpoint=source.checkpoint(),
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
        weights_source=source,
    )


def _auto_freeze(
    knobs: object,
    unfreeze_epoch: object,
    freeze_schedule: object,
    architecture: Architecture,
    epochs: int,
    model,
    device: str,
) -> AutoFreeze:
    for key, value in (("unfreeze_epoch", unfreeze_epoch), ("freeze_schedule", freeze_schedule)):
        if value is not None:
            raise ConfigError(
                f"freeze=auto with {key} set: auto decides when layers freeze (set where it starts with "
                "freeze_auto.start); use one of the two"
            )
    return resolve_auto_freeze(knobs, architecture, epochs, model, device)


@dataclass(frozen=True)
class TrackingSettings:
    """`tracking`: where and how often a variant is recorded."""

    uri: str
    experiment: str
    log_weights: bool
    gpu_sample_interval_s: float
    system_metrics_interval_s: float


@dataclass(frozen=True)
class JobSettings:
    """How a job runs and where it is tracked; no part of what it trains (nor of the config hash)."""

    tracking: TrackingSettings
    rerun: bool  # retrain a variant that already finished
    on_held: str  # a variant a live run elsewhere trains: wait for it, or skip it
    variants_per_gpu: int
    verbose: bool  # ultralytics' own output on the terminal too
    lease_gpu: bool  # `train.device: null`: on a GPU machine the job leases a GPU no other variant holds
    cache_dir: Path
    config: dict  # the job's whole config, interpolations resolved: its record (config/resolved.yaml)


def resolve_job(cfg: DictConfig) -> JobSettings:
    """The job's own settings, read in the job itself (they hold the store's URI: never saved)."""
    sweep = plain(cfg.sweep)
    if sweep["on_held"] not in ON_HELD:
        raise ConfigError(f"sweep.on_held={sweep['on_held']}: use {' or '.join(ON_HELD)}")
    tracking = plain(cfg.tracking)
    return JobSettings(
        tracking=TrackingSettings(
            uri=str(tracking["uri"]),
            experiment=str(tracking["experiment"]),
            log_weights=bool(tracking["log_weights"]),
            gpu_sample_interval_s=float(tracking["gpu_sample_interval_s"]),
            system_metrics_interval_s=float(tracking["system_metrics_interval_s"]),
        ),
        rerun=bool(sweep["rerun"]),
        on_held=sweep["on_held"],
        variants_per_gpu=sweep["variants_per_gpu"],
        verbose=bool(sweep["verbose"]),
        lease_gpu=cfg.train.device is None,
        cache_dir=Path(cfg.paths.cache_dir),
        config=plain(cfg),
    )


VARIANTS_FILE = "variants.pkl"  # in the sweep folder: each job's VariantSpec, resolved by the launching process


def save_variants(sweep_dir: Path, jobs: list[tuple[list[str], VariantSpec]]) -> None:
    """The launching process resolved every job's variant (by the job's overrides): the jobs on
    this host reuse them instead of resolving (building the network, checking the data) again."""
    specs = {_key(overrides): spec for overrides, spec in jobs}
    write_atomic(Path(sweep_dir) / VARIANTS_FILE, pickle.dumps({"host": socket.gethostname(), "specs": specs}))


def _key(overrides: list[str]) -> tuple[str, ...]:
    """A job's overrides as the file keeps them: redacted, as Hydra's own overrides.yaml is."""
    return tuple(redact(str(o)) for o in overrides)


def saved_variant(sweep_dir: Path, overrides: list[str]) -> VariantSpec | None:
    """This job's variant as the launching process resolved it; None on another host (its devices
    and paths may differ), or when the sweep saved none for these overrides."""
    try:
        saved = pickle.loads((Path(sweep_dir) / VARIANTS_FILE).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    if saved.get("host") != socket.gethostname():
        return None
    return saved["specs"].get(_key(overrides))


def resolve_train_args(train: dict, cpu_workers: bool = False) -> dict:
    """The ultralytics train arguments (plain values), checked as the trainer would check them,
    device resolved; `cpu_workers` (`sweep.cpu_workers`) keeps `workers` on CPU, where the sweep puts it back."""
    args = dict(train)
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
