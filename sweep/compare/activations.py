"""Layer outputs on calibration images, through forward hooks on `model.model[i]`.

What is kept per layer (memory stays small whatever the image size):
- CKA features: the output average-pooled to a `grid` x `grid` map and flattened to
  C * grid^2 values per image. Pure global average pooling (grid=1) throws away where things
  are, which a detector's features are about; a full flatten costs C*H*W floats per image.
  A coarse grid keeps the layout at a bounded cost.
- Per-channel std over all images and positions, for dead-channel counts.
The head (Detect) has no feature map: its output is taken as the box and class logits per
anchor over all levels, (B, 4*reg_max + nc, anchors), pooled along the anchors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Activations:
    """Per-layer summaries of one model on the calibration images."""

    features: dict[int, torch.Tensor]  # (n_images, C * grid^2), for CKA
    channel_std: dict[int, torch.Tensor]  # (C,), std over images and positions


def channels_by_position(output: object) -> torch.Tensor | None:
    """A layer output as (B, C, positions), or None when it has no per-channel form."""
    if isinstance(output, torch.Tensor) and output.dim() == 4:
        return output.flatten(2)
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], dict):
        preds = output[1]  # Detect in eval mode: (decoded, {"boxes", "scores", "feats"})
        if isinstance(preds.get("boxes"), torch.Tensor) and isinstance(preds.get("scores"), torch.Tensor):
            return torch.cat([preds["boxes"], preds["scores"]], dim=1)
    return None


def pooled(output: object, grid: int) -> torch.Tensor | None:
    """The CKA features of one layer output: (B, C * grid^2)."""
    if isinstance(output, torch.Tensor) and output.dim() == 4:
        return F.adaptive_avg_pool2d(output, grid).flatten(1)
    per_position = channels_by_position(output)
    if per_position is None:
        return None
    return F.adaptive_avg_pool1d(per_position, grid * grid).flatten(1)


class _RunningStd:
    """Per-channel mean and variance merged batch by batch (Chan et al.), in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        var_b, mean_b = torch.var_mean(x.float(), dim=(0, 2), correction=0)
        n_b = x.shape[0] * x.shape[2]
        mean_b, m2_b = mean_b.double(), var_b.double() * n_b
        if self.mean is None:
            self.count, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / n)
        self.count = n

    def std(self) -> torch.Tensor:
        return torch.sqrt(self.m2 / self.count)


@torch.inference_mode()
def collect(model: nn.Module, images: torch.Tensor, grid: int = 4, batch_size: int = 16) -> Activations:
    """Run the images through the model once and summarise every layer's output."""
    stds: dict[int, _RunningStd] = {}
    features: dict[int, list[torch.Tensor]] = {}

    def hook(index: int):
        def record(_module: nn.Module, _inputs: object, output: object) -> None:
            per_position = channels_by_position(output)
            if per_position is None:
                return
            stds.setdefault(index, _RunningStd()).add(per_position)
            features.setdefault(index, []).append(pooled(output, grid))

        return record

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(model.model)]
    try:
        for batch in images.split(batch_size):
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return Activations(
        features={i: torch.cat(chunks) for i, chunks in features.items()},
        channel_std={i: s.std() for i, s in stds.items()},
    )


@torch.inference_mode()
def feature_maps(model: nn.Module, image: torch.Tensor, layers: list[int]) -> dict[int, np.ndarray]:
    """The (C, H, W) output of each chosen layer for one image (3, S, S)."""
    maps: dict[int, np.ndarray] = {}

    def hook(index: int):
        def record(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                maps[index] = output[0].float().numpy().copy()

        return record

    handles = [model.model[i].register_forward_hook(hook(i)) for i in layers]
    try:
        model(image[None])
    finally:
        for handle in handles:
            handle.remove()
    return maps
