"""Dead or near-dead channels, found two ways.

SiLU has no flat zero region, so a dead channel in Conv-BN-SiLU is a constant one, not a zero
one: either BN squashes it (|gamma| / sqrt(running_var + eps) ~ 0) or its output barely varies
over a calibration set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DeadCount:
    dead: int
    total: int


def dead_by_bn(layer: nn.Module, threshold: float) -> DeadCount:
    """Channels of every BatchNorm2d in the layer with |gamma| / sqrt(var + eps) below `threshold`."""
    dead = total = 0
    for bn in (m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)):
        scale = bn.weight.detach().abs() / torch.sqrt(bn.running_var + bn.eps)
        dead += int((scale < threshold).sum())
        total += scale.numel()
    return DeadCount(dead, total)


def dead_by_activation(channel_std: torch.Tensor, rel_threshold: float) -> DeadCount:
    """Output channels whose std over the calibration set is below `rel_threshold` x the layer's mean.

    Relative, because activation scales differ by orders of magnitude between layers and
    models (an untrained network shrinks them layer after layer).
    """
    mean_std = channel_std.mean()
    if mean_std <= 0:
        return DeadCount(channel_std.numel(), channel_std.numel())
    return DeadCount(int((channel_std < rel_threshold * mean_std).sum()), channel_std.numel())
