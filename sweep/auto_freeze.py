"""`freeze=auto`: freeze the front of the network during training, once its layers have stopped learning.

The signal, a layer's plasticity in one epoch (AutoFreeze, Liu et al. 2021, and Egeria, EuroSys 2023,
freeze by similar "has this layer stopped changing" signals):

    plasticity = ||W_end - W_start|| / ||W_start|| / S

over the layer's conv weights W (its BatchNorm and biases follow other learning rates), where S is
how far a constant unit gradient would have moved a weight in that epoch: the sum over its optimizer
steps of lr / (1 - momentum) (SGD, MuSGD, RMSprop) or lr (Adam), read from the weights' parameter
group at each step. Dividing by S takes out warmup and the learning-rate schedule, so plasticity
falls only when the layer's net movement does: when its gradients stop pointing one way and cancel
out over the epoch. It costs one copy of the trainable weights per epoch and one norm per layer.

The rule: a layer has settled when its plasticity stayed below `threshold` x its peak (its largest
value in the epochs before) for the last `patience` epochs. The peak, not the first epoch, is the
reference: in warmup the momentum buffers are still filling, and the first epochs often move less
per unit of learning rate than the next ones. At each epoch's start the frozen prefix grows to the last settled layer of the longest
settled prefix (layers without weights, e.g. Upsample, Concat, do not stop it), at most `max`
layers; it only ever grows, and never reaches the head.

Freezing leaves the state a fresh `freeze=` of the prefix would, through ultralytics' own
`freeze_layer_names` (sweep/schedule.py's `freeze_layers`, whose docstring explains BatchNorm and
the optimizer), plus what freezing mid-training adds:
- the newly frozen layers' EMA is set to the model's weights and BatchNorm statistics. The EMA
  lerps toward the model, and lerp(x, x, w) == x, so from then on EMA and model hold the frozen
  weights bit for bit (otherwise the EMA would drift toward them for thousands of steps). The
  checkpoints, which keep only the EMA, and a resume, which loads the EMA into the model, then
  hold exactly the frozen weights;
- gradients accumulated for them but not yet stepped (nbs > batch) are dropped, so no later step
  moves them; their optimizer state stays unused (optimizers skip parameters without gradient).
No backward pass goes through the prefix: none of its parameters requires a gradient and the input
images do not, so none of its outputs does, and autograd records no graph there.

Decisions are a pure function of the per-epoch signal records, kept in `auto_freeze.json` in the
training's save_dir and written (atomically) at each epoch's end, before ultralytics writes
last.pt. A resumed training, or an epoch that ultralytics redoes (NaN recovery, OOM retry), drops
the records from the epoch it starts on, so it freezes the same prefix as the run it continues and
makes its later decisions by the same rule from the same history.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sweep.errors import ConfigError
from sweep.freeze import Architecture, check_trainable, count_parameters, resolve_freeze
from sweep.schedule import FreezeSchedule, Stage, freeze_layers, value_label

log = logging.getLogger(__name__)

AUTO = "auto"
STATE_FILE = "auto_freeze.json"
KNOBS = ("start", "max", "threshold", "patience")


@dataclass(frozen=True)
class AutoFreeze:
    """The policy's knobs, resolved: prefixes are layer counts (freeze=N freezes layers 0..N-1)."""

    start: object  # as given, for labels
    start_layers: int
    max_layers: int
    threshold: float
    patience: int

    @property
    def label(self) -> str:
        return AUTO if self.start_layers == 0 else f"{AUTO} from {value_label(self.start)}"

    def as_param(self) -> str:
        """Stable text of the rule (layer counts, not how they were named), for params and hashes."""
        knobs = {
            "start": self.start_layers,
            "max": self.max_layers,
            "threshold": self.threshold,
            "patience": self.patience,
        }
        return json.dumps(knobs, separators=(",", ":"))


def resolve_auto_freeze(
    knobs: object, architecture: Architecture, epochs: int, model: nn.Module, device: str
) -> AutoFreeze:
    """`freeze_auto:` checked and resolved. Raises ConfigError, one line, before anything trains."""
    given = knobs
    if not isinstance(given, Mapping) or set(given) != set(KNOBS):
        raise ConfigError(f"freeze_auto={given!r} is not valid: give {', '.join(KNOBS)} (see conf/config.yaml)")
    if "," in str(device):
        raise ConfigError(
            f"train.device={device} with freeze=auto: adaptive freezing needs one device, "
            "not a DDP device list (use e.g. device=0)"
        )
    start = _prefix("start", given["start"], architecture, model)
    limit = _prefix("max", given["max"], architecture, model)
    if limit < start:
        raise ConfigError(
            f"freeze_auto.max={value_label(given['max'])} ({limit} layers) is below freeze_auto.start="
            f"{value_label(given['start'])} ({start} layers): the frozen prefix only grows from start up to max"
        )
    threshold = given["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise ConfigError(
            f"freeze_auto.threshold={threshold!r} is not valid: use a fraction in (0, 1) of a layer's plasticity "
            "at its peak, below which it counts as settled (e.g. 0.5)"
        )
    patience = given["patience"]
    if epochs < 3:
        raise ConfigError(
            f"freeze=auto needs train.epochs of 3 or more (got {epochs}): a peak, one epoch below it, then an "
            "epoch to freeze in; use a fixed freeze level for shorter trainings"
        )
    if isinstance(patience, bool) or not isinstance(patience, int) or not 1 <= patience < epochs - 1:
        raise ConfigError(
            f"freeze_auto.patience={patience!r} is not valid: use 1..{epochs - 2} epochs (a peak, then patience "
            f"epochs below it, then at least one epoch of train.epochs={epochs} to freeze in)"
        )
    return AutoFreeze(given["start"], start, limit, float(threshold), patience)


def _prefix(key: str, value: object, architecture: Architecture, model: nn.Module) -> int:
    """A freeze value that names a prefix 0..N-1 leaving something trainable and the head alone: N."""
    try:
        layers = resolve_freeze(value, architecture)
        check_trainable(count_parameters(model, layers), value, architecture)
    except ConfigError as error:
        raise ConfigError(f"freeze_auto.{key}: {error}") from None
    if layers != list(range(len(layers))) or len(layers) > architecture.head_index:
        raise ConfigError(
            f"freeze_auto.{key}={value_label(value)} is not a prefix of the layers before the head: "
            f"use none, backbone, all_but_head or an int 0..{architecture.head_index}"
        )
    return len(layers)


# ---- the rule: a pure function of the records ----


def settled(plasticity: Sequence[float], policy: AutoFreeze) -> bool:
    """Below threshold x its peak before them in each of its last `patience` epochs (in measured order)."""
    if len(plasticity) <= policy.patience:
        return False
    peak = max(plasticity[: -policy.patience])
    return all(p < policy.threshold * peak for p in plasticity[-policy.patience :])


def frozen_prefix(records: Sequence[dict], policy: AutoFreeze, weighted: Sequence[int]) -> int:
    """Layers frozen after the epochs in `records` (each: epoch, frozen, plasticity per measured layer)."""
    frozen = records[-1]["frozen"] if records else policy.start_layers
    grown = frozen
    for layer in range(frozen, policy.max_layers):
        if layer not in weighted:
            continue  # no weights to train: it neither stops nor extends the prefix
        history = [r["plasticity"][str(layer)] for r in records if str(layer) in r["plasticity"]]
        if not settled(history, policy):
            break
        grown = layer + 1
    return grown


def peak_ratio(records: Sequence[dict], layer: int) -> float:
    """The layer's latest plasticity as a fraction of its peak in the epochs before (NaN in its first epoch)."""
    history = [r["plasticity"][str(layer)] for r in records if str(layer) in r["plasticity"]]
    if len(history) < 2:
        return math.nan
    peak = max(history[:-1])
    return history[-1] / peak if peak > 0 else 0.0


def chosen_schedule(records: Sequence[dict], policy: AutoFreeze) -> FreezeSchedule:
    """What was frozen when, as the stages of a schedule (its param form is what the report reads)."""
    stages = [Stage(1, policy.start, tuple(range(policy.start_layers)))]
    for record in records:
        if record["frozen"] != len(stages[-1].layers):
            stages.append(Stage(record["epoch"], record["frozen"], tuple(range(record["frozen"]))))
    return FreezeSchedule(tuple(stages))


# ---- in the training loop ----


def layer_of(name: str) -> int:
    return int(name.split(".")[1])  # "model.12.cv1.conv.weight" -> 12


class AutoFreezer:
    """Ultralytics callbacks that measure plasticity each epoch and grow the frozen prefix by the rule.

    `records` holds one dict per finished epoch: epoch (1-based), frozen (layers frozen during it),
    plasticity (layer -> value, for the layers it trained), ratio (the first trainable layer's
    plasticity over its peak before) and next (layers frozen from the next epoch on).
    """

    def __init__(self, policy: AutoFreeze) -> None:
        self.policy = policy
        self.records: list[dict] = []
        self._weighted: list[int] = []
        self._frozen = policy.start_layers
        self._start: dict[int, list[torch.Tensor]] = {}
        self._step_scale = 0.0
        self._hooked: object = None

    def callbacks(self) -> dict[str, list[Callable]]:
        return {
            "on_train_start": [self.on_train_start],
            "on_train_epoch_start": [self.on_train_epoch_start],
            "on_train_epoch_end": [self.on_train_epoch_end],
        }

    def state_file(self, trainer) -> Path:
        return Path(trainer.save_dir) / STATE_FILE

    def on_train_start(self, trainer) -> None:
        """A resumed training continues from the records of the epochs its checkpoint holds."""
        self._weighted = sorted({layer_of(n) for n, p in trainer.model.named_parameters() if p.ndim > 1})
        self.records = []
        if trainer.start_epoch > 0:
            path = self.state_file(trainer)
            if not path.is_file():
                raise RuntimeError(f"freeze=auto cannot resume: {path} (its decisions so far) is missing")
            self.records = json.loads(path.read_text())["records"]

    def on_train_epoch_start(self, trainer) -> None:
        epoch = trainer.epoch + 1
        self.records = [r for r in self.records if r["epoch"] < epoch]  # an epoch redone, or resumed
        frozen = self._frozen = frozen_prefix(self.records, self.policy, self._weighted)
        layers = range(frozen)
        newly = {layer_of(n) for n, p in trainer.model.named_parameters() if p.requires_grad and layer_of(n) < frozen}
        freeze_layers(trainer, layers, "freeze=auto")
        if newly:
            settle_ema(trainer, newly)
        self._start = {
            layer: [p.detach().clone() for p in weights]
            for layer, weights in self._weights(trainer).items()
            if layer >= frozen
        }
        self._step_scale = 0.0
        if self._hooked is not trainer.optimizer:  # a new trainer, or an optimizer rebuilt
            trainer.optimizer.register_step_pre_hook(self._count_step)
            self._hooked = trainer.optimizer

    def on_train_epoch_end(self, trainer) -> None:
        epoch = trainer.epoch + 1
        plasticity = {}
        with torch.no_grad():
            for layer, weights in self._weights(trainer).items():
                if layer in self._start and self._step_scale > 0:
                    start = self._start[layer]
                    moved = math.sqrt(sum(float((w - s).square().sum()) for w, s in zip(weights, start, strict=True)))
                    norm = math.sqrt(sum(float(s.square().sum()) for s in start))
                    plasticity[str(layer)] = moved / norm / self._step_scale if norm > 0 else 0.0
        record = {"epoch": epoch, "frozen": self._frozen, "plasticity": plasticity}
        self.records.append(record)
        record["next"] = frozen_prefix(self.records, self.policy, self._weighted)
        candidate = next((layer for layer in self._weighted if layer >= record["next"]), None)
        record["ratio"] = {} if candidate is None else {str(candidate): peak_ratio(self.records, candidate)}
        self._write(self.state_file(trainer))

    def _write(self, path: Path) -> None:
        """Atomically: a kill mid-write leaves the previous epoch's complete file."""
        partial = path.with_suffix(".json.partial")
        state = {"policy": json.loads(self.policy.as_param()), "records": self.records}
        partial.write_text(json.dumps(state, indent=1, allow_nan=True))
        os.replace(partial, path)

    def _weights(self, trainer) -> dict[int, list[torch.Tensor]]:
        found: dict[int, list[torch.Tensor]] = {}
        for name, param in trainer.model.named_parameters():
            if param.ndim > 1:
                found.setdefault(layer_of(name), []).append(param)
        return found

    def _count_step(self, optimizer, args, kwargs) -> None:
        group = next((g for g in optimizer.param_groups if g.get("param_group") in ("weight", "muon")), None)
        group = group or optimizer.param_groups[0]
        self._step_scale += group["lr"] / (1.0 - group.get("momentum", 0.0))


def settle_ema(trainer, layers: set[int]) -> None:
    """Set the EMA of newly frozen layers to the model's tensors, and drop their unstepped gradients."""
    for name, param in trainer.model.named_parameters():
        if layer_of(name) in layers:
            param.grad = None
    if not trainer.ema:
        return
    model = trainer.model.state_dict()
    with torch.no_grad():
        for name, tensor in trainer.ema.ema.state_dict().items():
            if tensor.dtype.is_floating_point and name.startswith("model.") and layer_of(name) in layers:
                tensor.copy_(model[name])
