"""Dead or near-dead channels, found two ways, kept as per-channel masks so that two models can
be compared channel by channel (gained, lost).

SiLU has no flat zero region, so a dead channel in Conv-BN-SiLU is a constant one, not a zero
one. A conv channel k followed by BatchNorm computes, in eval mode,

    y_k = W_eff_k * x + b_eff_k,   W_eff_k = gamma_k W_k / sqrt(running_var_k + eps)

so its output varies with the input only through W_eff_k. By weights, a channel is dead when
||W_eff_k|| is below `rel` x the median ||W_eff_j|| of the same conv's channels (same input,
so the ratio is a ratio of output scales). W_eff is the linear part of the function the layer
computes: a reparametrisation that leaves that function unchanged (conv weights x c, running
mean x c, running variance x c^2 with eps absorbed) leaves the criterion unchanged too, whereas
|gamma| / sqrt(running_var + eps) drops by c. By activations, a channel is dead when its std over
the calibration images and positions is below `rel` x the layer's mean channel std.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sweep.compare.weights import folded_weights


@dataclass(frozen=True)
class DeadChannels:
    """Which channels of one layer are dead (True), in a fixed order: one model against another
    compares position by position."""

    mask: torch.Tensor  # bool, one entry per channel

    @property
    def dead(self) -> int:
        return int(self.mask.sum())

    @property
    def total(self) -> int:
        return self.mask.numel()

    def gained_lost(self, reference: DeadChannels) -> tuple[int, int]:
        """Channels dead here but not in `reference`, and dead there but not here; (0, 0) when the
        channels do not correspond (a head re-initialised for another class count)."""
        if reference.mask.shape != self.mask.shape:
            return 0, 0
        return int((self.mask & ~reference.mask).sum()), int((reference.mask & ~self.mask).sum())


def channel_weight_norms(layer: nn.Module) -> list[torch.Tensor]:
    """||W_eff_k|| per output channel of every conv in the layer (BN folded in where it follows)."""
    return [
        weight.flatten(1).double().norm(dim=1)
        for name, weight in folded_weights(layer).items()
        if name.endswith("weight")
    ]


def dead_by_weights(layer: nn.Module, rel_threshold: float) -> DeadChannels:
    """Channels whose BN-folded weight norm is below `rel_threshold` x the median of their conv."""
    masks = [norms < rel_threshold * norms.median() for norms in channel_weight_norms(layer)]
    return DeadChannels(torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool))


def dead_by_activation(channel_std: torch.Tensor, rel_threshold: float) -> DeadChannels:
    """Output channels whose std over the calibration set is below `rel_threshold` x the layer's mean.

    Relative, because activation scales differ by orders of magnitude between layers and
    models (an untrained network shrinks them layer after layer).
    """
    return DeadChannels(channel_std <= rel_threshold * channel_std.mean())
