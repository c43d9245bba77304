"""Freeze schedules: layers frozen for the first epochs, then unfrozen (all at once or gradually).

Ultralytics only freezes for a whole training. A schedule starts with ultralytics' own `freeze=`
(its first stage), and at each later stage's first epoch a callback puts the model into exactly
the state a fresh `freeze=` of that stage would give:

- `requires_grad` set from the stage's layers, as `_setup_train` sets it (`.dfl` stays frozen);
- `trainer.freeze_layer_names` updated, so ultralytics' own `_model_train`, which runs right after
  `on_train_epoch_start` every epoch, puts BatchNorm of still-frozen layers in eval mode and
  of unfrozen ones back in train mode;
- nothing to do for the optimizer: `build_optimizer` puts every parameter in a group whether or
  not it is frozen, and torch's optimizers (SGD, Adam(W), MuSGD) and the AMP GradScaler skip
  parameters whose `.grad` is None. A frozen parameter so has no momentum or Adam state and gets
  no weight decay; from the first step after the switch it gets a gradient, its state starts
  fresh, and it follows its group's learning rate: ultralytics' schedule is left unchanged;
- nothing to do for the EMA: `ModelEMA.update` lerps every float tensor of the state dict toward
  the model, and `lerp(x, x, w) == x` exactly, so a frozen layer's EMA stays bit-identical to the
  model (and to the base) and simply starts moving with it after the switch.

The stage is applied at the start of every epoch, idempotently, so a resumed training (rebuilt
from last.pt with the first stage's `freeze=` from its saved arguments) lands in the right stage,
and so does an epoch that ultralytics restarts (NaN recovery, OOM retry). Neither the mosaic close
nor those restarts rebuild the optimizer or touch `requires_grad`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from torch import nn

from sweep.errors import ConfigError
from sweep.freeze import Architecture, check_trainable, count_parameters, resolve_freeze

log = logging.getLogger(__name__)

EXAMPLE = "{1: all_but_head, 4: backbone, 7: none}"
_LAYER_NAME = re.compile(r"model\.\d+\.")  # the per-layer names ultralytics freezes; others (.dfl) always stay


@dataclass(frozen=True)
class Stage:
    first_epoch: int  # 1-based, as users count epochs
    value: object  # the freeze value as given (a preset, an int or a list), for labels
    layers: tuple[int, ...]


@dataclass(frozen=True)
class FreezeSchedule:
    """Stages in epoch order; the first starts at epoch 1, and each freezes a subset of the one before."""

    stages: tuple[Stage, ...]

    @property
    def first_layers(self) -> tuple[int, ...]:
        """What to pass as ultralytics' own `freeze=`: it freezes them and keeps their BatchNorm in eval mode."""
        return self.stages[0].layers

    @property
    def switches(self) -> bool:
        """False when the schedule is one fixed freeze (e.g. unfreeze_epoch=0): it trains exactly as `freeze=` would."""
        return len(self.stages) > 1

    def layers_at(self, epoch: int) -> tuple[int, ...]:
        """Layers frozen during `epoch` (1-based)."""
        return [stage for stage in self.stages if stage.first_epoch <= epoch][-1].layers

    @property
    def label(self) -> str:
        """For run names and report rows: `backbone -> none @4` means none from epoch 4 on."""
        first, *rest = self.stages
        return " -> ".join([value_label(first.value), *(f"{value_label(s.value)} @{s.first_epoch}" for s in rest)])

    def as_param(self) -> str:
        """Stable text of what trains (epochs and layer indices, not how they were named), for params and hashes."""
        return json.dumps([[s.first_epoch, list(s.layers)] for s in self.stages], separators=(",", ":"))


def value_label(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(i) for i in value) + "]"
    return str(value)


def resolve_schedule(
    freeze: object,
    unfreeze_epoch: object,
    freeze_schedule: object,
    architecture: Architecture,
    epochs: int,
    model: nn.Module,
) -> FreezeSchedule | None:
    """The schedule a config asks for, or None for plain fixed freezing (ultralytics' own `freeze=` alone).

    `unfreeze_epoch: K` freezes `freeze`'s layers for epochs 1..K; K=0 never freezes them (the same training
    as freeze=none). `freeze_schedule` maps first epochs to freeze values; epoch 1 defaults to `freeze`.
    `model` is the network as the trainer builds it, to check that every stage leaves something trainable.
    Raises ConfigError, one line, before anything trains.
    """
    if unfreeze_epoch is None and freeze_schedule is None:
        return None
    if unfreeze_epoch is not None and freeze_schedule is not None:
        raise ConfigError(
            f"unfreeze_epoch={unfreeze_epoch} and freeze_schedule={freeze_schedule} are both set: "
            "use one (unfreeze_epoch: K is freeze_schedule {1: <freeze>, K+1: none})"
        )
    if freeze_schedule is None:
        values = _from_unfreeze_epoch(freeze, unfreeze_epoch, epochs)
    else:
        values = _from_mapping(freeze, freeze_schedule, epochs, architecture)
    stages: list[Stage] = []
    for first_epoch, value in sorted(values.items()):
        try:
            layers = tuple(resolve_freeze(value, architecture))
            check_trainable(count_parameters(model, layers), value, architecture)
        except ConfigError as error:
            raise ConfigError(
                f"freeze_schedule[{first_epoch}]: {error}" if freeze_schedule is not None else str(error)
            ) from None
        if stages and not set(layers) <= set(stages[-1].layers):
            _refuse_refreeze(stages[-1], first_epoch, value, layers)
        if not stages or layers != stages[-1].layers:  # an unchanged stage is no switch
            stages.append(Stage(first_epoch, value, layers))
    return FreezeSchedule(tuple(stages))


def _from_unfreeze_epoch(freeze: object, unfreeze_epoch: object, epochs: int) -> dict[int, object]:
    if isinstance(unfreeze_epoch, bool) or not isinstance(unfreeze_epoch, int) or not 0 <= unfreeze_epoch < epochs:
        raise ConfigError(
            f"unfreeze_epoch={unfreeze_epoch!r} is not valid: use 0..{epochs - 1} (the last frozen epoch of "
            f"{epochs}; 0 never freezes), or null to keep freeze={value_label(freeze)} for the whole training"
        )
    return {1: "none"} if unfreeze_epoch == 0 else {1: freeze, unfreeze_epoch + 1: "none"}


def _from_mapping(freeze: object, freeze_schedule: object, epochs: int, arch: Architecture) -> dict[int, object]:
    if not isinstance(freeze_schedule, Mapping) or not freeze_schedule:
        raise ConfigError(
            f"freeze_schedule={freeze_schedule!r} is not valid: use a mapping from epoch to freeze, e.g. {EXAMPLE}"
        )
    values: dict[int, object] = {}
    for key, value in freeze_schedule.items():
        epoch = _epoch(key)
        if epoch is None or not 1 <= epoch <= epochs:
            raise ConfigError(
                f"freeze_schedule: {key!r} is not an epoch of this training: use 1..{epochs}, e.g. {EXAMPLE}"
            )
        values[epoch] = value
    if 1 in values and resolve_freeze(freeze, arch) not in ([], resolve_freeze(values[1], arch)):
        raise ConfigError(
            f"freeze={value_label(freeze)} conflicts with freeze_schedule's epoch 1 entry {value_label(values[1])}: "
            "give epoch 1's freeze in one place (freeze_schedule's epoch 1 defaults to freeze)"
        )
    values.setdefault(1, freeze)
    return values


def _epoch(key: object) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.isdigit():  # a yaml file may quote its keys
        return int(key)
    return None


def _refuse_refreeze(before: Stage, first_epoch: int, value: object, layers: tuple[int, ...]) -> None:
    """A layer once trainable stays trainable: freezing it again could not give a fresh freeze's state (the
    optimizer keeps its momentum from the trainable epochs and would apply it if the layer were unfrozen
    later), and its weights and BatchNorm statistics would no longer be the base's, which freezing means here."""
    again = sorted(set(layers) - set(before.layers))
    raise ConfigError(
        f"freeze_schedule[{first_epoch}]: {value_label(value)} freezes layers {_span(again)}, which the stage before "
        f"it ({before.first_epoch}: {value_label(before.value)}) trains: each stage must freeze a subset of the one "
        "before (gradual unfreezing)"
    )


def _span(layers: list[int]) -> str:
    contiguous = layers == list(range(layers[0], layers[-1] + 1))
    return f"{layers[0]}..{layers[-1]}" if contiguous and len(layers) > 2 else ",".join(map(str, layers))


def schedule_callbacks(schedule: FreezeSchedule) -> dict[str, list[Callable]]:
    """Ultralytics callbacks that follow `schedule`; pass `schedule.first_layers` as `freeze=` to the same training."""
    return {"on_train_epoch_start": [partial(apply_stage, schedule)]}


def apply_stage(schedule: FreezeSchedule, trainer) -> None:
    """Put the model into the current epoch's stage, as ultralytics' `_setup_train` would freeze it."""
    freeze_layers(trainer, schedule.layers_at(trainer.epoch + 1), "Freeze schedule")


def freeze_layers(trainer, layers: Sequence[int], who: str) -> None:
    """Freeze exactly `layers` (plus what ultralytics always freezes) from this epoch on, as a fresh `freeze=`
    would: call it at `on_train_epoch_start`, before ultralytics' `_model_train` sets BatchNorm modes."""
    if trainer.world_size > 1:
        # DDP registers only the parameters that need gradients when it wraps the model: unfrozen later, they
        # would never be all-reduced and the replicas would drift apart.
        raise RuntimeError(f"{who} needs single-device training: use one device, not a DDP device list")
    always = [name for name in trainer.freeze_layer_names if not _LAYER_NAME.fullmatch(name)]
    names = [f"model.{i}." for i in layers] + always
    if names != trainer.freeze_layer_names:
        log.info("%s, epoch %d: layers %s frozen", who, trainer.epoch + 1, list(layers) or "none")
    trainer.freeze_layer_names = names  # ultralytics' _model_train, next, sets BatchNorm modes from these
    for name, param in trainer.model.named_parameters():
        if param.dtype.is_floating_point:
            param.requires_grad = not any(pattern in name for pattern in names)


def trainable_params(trainer) -> int:
    """Parameters the optimizer updates this epoch (log it at on_fit_epoch_end, after the stage applied)."""
    return sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)


def check_single_device(schedule: FreezeSchedule | None, device: str) -> None:
    """Refuse a switching schedule with a multi-GPU device before anything trains (see apply_stage)."""
    if schedule is not None and schedule.switches and "," in str(device):
        raise ConfigError(
            f"train.device={device} with freeze schedule {schedule.label}: schedules need one device, "
            "not a DDP device list (use e.g. device=0)"
        )
