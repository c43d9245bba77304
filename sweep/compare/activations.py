"""Layer outputs on calibration images, summarised per layer of `model.model[i]`.

What is kept per layer (memory stays small whatever the image size):
- CKA features: the output average-pooled to a `grid` x `grid` map and flattened to
  C * grid^2 values per image. Pure global average pooling (grid=1) throws away where things
  are, which a detector's features are about; a full flatten costs C*H*W floats per image.
  A coarse grid keeps the layout at a bounded cost.
- Per-channel std over all images and positions, for dead-channel counts.
- Optionally the full (C, H, W) maps of a few layers for one image, for the feature-map plots.
The head (Detect) has no feature map: its output is taken as the box and class logits per
anchor over all levels, (B, 4*reg_max + nc, anchors), pooled along the anchors.

Speed (`collect_models`): the forward passes are most of the tool's time, and variants trained
with frozen layers share their leading layers with the base bit for bit. The base runs once per
batch keeping the outputs its successors read; each variant then runs only from its first layer
that differs from the base (`shared_prefix`), fed the base's outputs, and takes the base's
summaries for the layers before it. Each model runs on a copy with BatchNorm folded into its
convs (`folded_copy`) and channels-last tensors: the same eval-mode function, to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Activations:
    """Per-layer summaries of one model on the calibration images."""

    features: dict[int, torch.Tensor]  # (n_images, C * grid^2), for CKA
    channel_std: dict[int, torch.Tensor]  # (C,), std over images and positions
    maps: dict[int, np.ndarray] = field(default_factory=dict)  # chosen layer -> (C, H, W) of one image


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
        # Two passes (mean, then the mean square about it): as exact as torch.var_mean's Welford
        # (no cancellation: deviations are centred), and 2-4x faster on these layouts.
        x = x.float()
        mean_b = x.mean(dim=(0, 2), keepdim=True)
        var_b, mean_b = (x - mean_b).square_().mean(dim=(0, 2)), mean_b.flatten()
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


class _Summaries:
    """One model's per-layer summaries, fed layer output by layer output, batch after batch."""

    def __init__(self, grid: int, map_layers: Sequence[int] = ()) -> None:
        self.grid = grid
        self.map_layers = frozenset(map_layers)
        self.stds: dict[int, _RunningStd] = {}
        self.features: dict[int, list[torch.Tensor]] = {}
        self.maps: dict[int, np.ndarray] = {}

    def add(self, index: int, output: object, map_row: int | None = None) -> None:
        if map_row is not None and index in self.map_layers and isinstance(output, torch.Tensor) and output.dim() == 4:
            self.maps[index] = output[map_row].float().numpy().copy()
        per_position = channels_by_position(output)
        if per_position is None:
            return
        self.stds.setdefault(index, _RunningStd()).add(per_position)
        self.features.setdefault(index, []).append(pooled(output, self.grid))

    def result(self) -> Activations:
        return Activations(
            features={i: torch.cat(chunks) for i, chunks in self.features.items()},
            channel_std={i: s.std() for i, s in self.stds.items()},
            maps=dict(self.maps),
        )


def _batches(images: torch.Tensor, batch_size: int, map_image: int | None) -> list[tuple[torch.Tensor, int | None]]:
    """The image batches, each with the row of the feature-map image in it (None elsewhere)."""
    out = []
    for b, batch in enumerate(images.split(batch_size)):
        row = map_image - b * batch_size if map_image is not None else None
        out.append((batch, row if row is not None and 0 <= row < len(batch) else None))
    return out


@torch.inference_mode()
def collect(
    model: nn.Module,
    images: torch.Tensor,
    grid: int = 4,
    batch_size: int = 16,
    map_image: int | None = None,
    map_layers: Sequence[int] = (),
) -> Activations:
    """Run the images through the model's own forward once and summarise every layer's output
    (forward hooks): the plain path, for models whose routing `collect_models` does not know."""
    summaries = _Summaries(grid, map_layers)
    row: list[int | None] = [None]

    def hook(index: int):
        def record(_module: nn.Module, _inputs: object, output: object) -> None:
            summaries.add(index, output, row[0])

        return record

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(model.model)]
    try:
        for batch, row[0] in _batches(images, batch_size, map_image):
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return summaries.result()


def routable(model: nn.Module) -> bool:
    """Whether the model's forward is ultralytics' plain `_predict_once`, which `run_layers` replicates
    (World, YOLOE and RT-DETR models route differently: they take the plain path)."""
    from ultralytics.nn.tasks import BaseModel

    layers = getattr(model, "model", None)
    return (
        isinstance(model, BaseModel)
        and type(model).predict is BaseModel.predict
        and type(model)._predict_once is BaseModel._predict_once
        and isinstance(layers, nn.Sequential)
        and hasattr(model, "save")
        and all(getattr(m, "i", None) == i and hasattr(m, "f") for i, m in enumerate(layers))
    )


def run_layers(
    model: nn.Module,
    x: torch.Tensor,
    start: int,
    earlier: dict[int, object],
    keep: frozenset[int],
    record: Callable[[int, object], None],
) -> dict[int, object]:
    """Run layers `start`.. of an ultralytics model, routed exactly as `BaseModel._predict_once`
    routes them: a layer reads the previous output (`m.f == -1`) or earlier outputs `y[m.f]`,
    and `y` holds the outputs of the layers in `model.save` (None for the others).

    `x` is the image batch when `start` is 0; otherwise `earlier` must hold the outputs of layer
    `start - 1` and of every layer < start in `model.save`, which is all the layers from `start` on
    can read. Returns the outputs of the layers in `keep`.
    """
    save = set(model.save)
    y = [earlier[j] if j in save else None for j in range(start)]
    if start:
        x = earlier[start - 1]
    kept: dict[int, object] = {}
    for m in model.model[start:]:
        if m.f != -1:  # not from the previous layer
            x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
        x = m(x)
        y.append(x if m.i in save else None)
        record(m.i, x)
        if m.i in keep:
            kept[m.i] = x
    return kept


def shared_prefix(base: nn.Module, other: nn.Module) -> int:
    """How many leading layers of `other` are bit-identical to the base's (0: none).

    A layer is identical when it is the same class, reads the same inputs (`f`), is in the same
    train/eval mode and every parameter and buffer (BatchNorm running statistics included) has
    the same name, dtype, shape and values. Layers frozen with ultralytics' `freeze=` are (their
    running statistics stay too); layers frozen by `requires_grad` alone, whose BatchNorm kept
    updating its running statistics, are not. The routing (`save`) must be the same too.
    """
    if sorted(base.save) != sorted(other.save):
        return 0
    count = 0
    for a, b in zip(base.model, other.model, strict=False):
        if not _same_layer(a, b):
            break
        count += 1
    return count


def _same_layer(a: nn.Module, b: nn.Module) -> bool:
    """Bit for bit the same computation: class, inputs, mode, every parameter and buffer."""
    if type(a) is not type(b) or getattr(a, "f", None) != getattr(b, "f", None) or a.training != b.training:
        return False
    ta = dict(chain(a.named_parameters(), a.named_buffers()))
    tb = dict(chain(b.named_parameters(), b.named_buffers()))
    return ta.keys() == tb.keys() and all(
        ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape and torch.equal(ta[k], tb[k]) for k in ta
    )


def folded_copy(model: nn.Module) -> nn.Module:
    """A copy with each Conv's BatchNorm folded into its conv by ultralytics' `fuse_conv_and_bn`,
    as its own `fuse()` does: in eval mode the same function up to float rounding (about 1e-7
    relative per layer), one pass over each output less. Only Conv-BN pairs are folded: the head
    keeps all its branches, so its output has the same form as the unfolded model's."""
    from ultralytics.nn.modules import Conv, Conv2
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    with torch.inference_mode(False), torch.no_grad():  # ordinary parameters, whoever calls
        copy = deepcopy(model)
        for m in copy.modules():
            if isinstance(m, Conv) and not isinstance(m, Conv2) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d):
                m.conv = fuse_conv_and_bn(m.conv, m.bn)
                delattr(m, "bn")
                m.forward = m.forward_fuse
    return copy


@torch.inference_mode()
def collect_models(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    grid: int = 4,
    batch_size: int = 16,
    map_image: int | None = None,
    map_layers: Sequence[int] = (),
    fold_bn: bool = True,
) -> list[Activations]:
    """The summaries of every model, the first being the base: what `collect` gives for each
    model (to float rounding: BN folded, channels last), computing each variant only from its
    first layer that differs from the base. Models whose routing this does not know take `collect`.

    Why reusing the base's outputs is exact: layer i's output depends only on its input and
    its own parameters and buffers (eval mode, no randomness). Layer 0 reads the images, the
    same for both; if layers 0..k-1 are bit-identical, by induction each gets bit-identical
    inputs and gives bit-identical outputs (the same kernels on the same shapes and data), so
    the variant's outputs, summaries and maps of layers < k are the base's, and layers >= k read
    exactly what the variant's own forward would give them. Folding BN keeps this: identical
    layers fold to identical weights.
    """
    if not all(routable(m) for m in models):
        return [collect(m, images, grid, batch_size, map_image, map_layers) for m in models]
    n_layers = len(models[0].model)
    starts = [0] + [shared_prefix(models[0], m) for m in models[1:]]
    runs = [_for_inference(m, fold_bn) for m in models]
    summaries = [_Summaries(grid, map_layers) for _ in models]
    keep = frozenset(models[0].save) | {k - 1 for k in starts if 0 < k < n_layers}
    for batch, row in _batches(images.contiguous(memory_format=torch.channels_last), batch_size, map_image):
        base_outputs = run_layers(runs[0], batch, 0, {}, keep, _recorder(summaries[0], row))
        for run, start, summary in zip(runs[1:], starts[1:], summaries[1:], strict=True):
            if start < n_layers:
                earlier = base_outputs if start else {}
                run_layers(run, batch, start, earlier, frozenset(), _recorder(summary, row))
    base = summaries[0].result()
    return [base] + [_with_prefix(base, s.result(), k) for s, k in zip(summaries[1:], starts[1:], strict=True)]


def _for_inference(model: nn.Module, fold_bn: bool) -> nn.Module:
    """The model to run: a copy, BN folded, channels-last weights, which oneDNN's CPU convs run
    about a quarter faster than NCHW (the same values to float rounding, laid out differently)."""
    with torch.inference_mode(False), torch.no_grad():  # ordinary parameters, whoever calls
        run = folded_copy(model) if fold_bn else deepcopy(model)
        return run.to(memory_format=torch.channels_last)


def _recorder(summaries: _Summaries, row: int | None) -> Callable[[int, object], None]:
    return lambda index, output: summaries.add(index, output, row)


def _with_prefix(base: Activations, own: Activations, start: int) -> Activations:
    """A variant's summaries: the base's for layers < start (identical layers), its own from start on."""

    def merged(base_part: dict, own_part: dict) -> dict:
        return dict(sorted({**{i: v for i, v in base_part.items() if i < start}, **own_part}.items()))

    return Activations(
        features=merged(base.features, own.features),
        channel_std=merged(base.channel_std, own.channel_std),
        maps=merged(base.maps, own.maps),
    )


def feature_maps(model: nn.Module, image: torch.Tensor, layers: list[int]) -> dict[int, np.ndarray]:
    """The (C, H, W) output of each chosen layer for one image (3, S, S)."""
    return collect(model, image[None], map_image=0, map_layers=layers).maps
