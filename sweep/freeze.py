"""Turn a user's `freeze` value into the layer indices ultralytics freezes.

Presets are read from the model's own yaml (length of its backbone section, index of its head),
never from a table, so any ultralytics architecture or custom yaml resolves correctly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from sweep.errors import ConfigError

PRESETS = ("none", "backbone", "all_but_head")
ACCEPTED = f"an int >= 0, a list of layer indices, or a preset ({', '.join(PRESETS)})"


@dataclass(frozen=True)
class Architecture:
    """The layer structure of a model yaml that freezing depends on."""

    name: str
    num_layers: int
    backbone_len: int
    head_index: int


def architecture_of(model_yaml: dict, name: str = "model") -> Architecture:
    """Read layer counts from an ultralytics model yaml dict (as on `model.yaml`)."""
    from ultralytics.nn.modules import head

    layers = list(model_yaml["backbone"]) + list(model_yaml["head"])
    head_indices = [i for i, layer in enumerate(layers) if str(layer[2]) in head.__all__]
    if not head_indices:
        raise ConfigError(f"model {name}: its yaml has no head layer ({', '.join(head.__all__)})")
    return Architecture(name, len(layers), len(model_yaml["backbone"]), head_indices[-1])


def resolve_freeze(freeze: object, arch: Architecture) -> list[int]:
    """Layer indices to freeze; `freeze` is an int N (layers 0..N-1), a list, or a preset name."""
    if isinstance(freeze, bool) or freeze is None:
        raise ConfigError(f"freeze={freeze!r} is not valid: use {ACCEPTED}")
    if isinstance(freeze, str):
        return _resolve_preset(freeze, arch)
    if isinstance(freeze, int):
        if freeze < 0:
            raise ConfigError(f"freeze={freeze} is negative: use {ACCEPTED}")
        if freeze > arch.num_layers:
            raise ConfigError(
                f"freeze={freeze} is beyond {arch.name}'s {arch.num_layers} layers: "
                f"use 0..{arch.head_index} (freeze={arch.head_index} keeps only the head trainable)"
            )
        return list(range(freeze))
    if isinstance(freeze, Sequence):
        return _resolve_list(freeze, arch)
    raise ConfigError(f"freeze={freeze!r} is not valid: use {ACCEPTED}")


def _resolve_preset(name: str, arch: Architecture) -> list[int]:
    if name.lstrip("-").isdigit():
        return resolve_freeze(int(name), arch)
    if name == "none":
        return []
    if name == "backbone":
        return list(range(arch.backbone_len))
    if name == "all_but_head":
        return list(range(arch.head_index))
    raise ConfigError(f"freeze={name!r} is not a known preset: use {ACCEPTED}")


def _resolve_list(indices: Sequence, arch: Architecture) -> list[int]:
    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < arch.num_layers]
    if bad:
        raise ConfigError(
            f"freeze={list(indices)} has invalid layer indices {bad}: {arch.name} has layers 0..{arch.num_layers - 1}"
        )
    return sorted(set(indices))


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    frozen: int

    @property
    def trainable(self) -> int:
        return self.total - self.frozen

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0


def frozen_name_patterns(layers: Sequence[int]) -> list[str]:
    """The parameter-name patterns ultralytics freezes (its trainer always freezes `.dfl`)."""
    return [f"model.{i}." for i in layers] + [".dfl"]


def is_frozen(param_name: str, layers: Sequence[int]) -> bool:
    return any(pattern in param_name for pattern in frozen_name_patterns(layers))


def count_parameters(model: nn.Module, layers: Sequence[int]) -> ParameterCounts:
    """Parameter counts exactly as ultralytics' trainer will freeze them."""
    patterns = frozen_name_patterns(layers)
    total = frozen = 0
    for name, param in model.named_parameters():
        total += param.numel()
        if any(p in name for p in patterns):
            frozen += param.numel()
    return ParameterCounts(total, frozen)


def check_trainable(counts: ParameterCounts, freeze: object, arch: Architecture) -> None:
    if counts.trainable == 0:
        raise ConfigError(
            f"freeze={freeze!r} leaves no trainable parameter in {arch.name}: "
            f"freeze at most layers 0..{arch.head_index - 1} (freeze={arch.head_index} or all_but_head)"
        )
