"""The fast activation pass of sweep.compare gives what a plain forward pass of each model gives.

Real YOLOv8n models built from the yaml (no mocks), a few images at 96 px: the base runs once,
a variant only from its first layer that differs from the base, BatchNorm folded into the convs.
"""

from __future__ import annotations

import shutil
from copy import deepcopy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from sweep.compare.activations import Activations, collect, collect_models, feature_maps, folded_copy, shared_prefix
from sweep.compare.analysis import Options, run_comparison
from sweep.compare.checkpoints import Checkpoint, DeclaredFreeze
from tests.test_compare import perturbed

N_LAYERS = 23  # yolov8n: layers 0..22, the head last
BATCH = 4  # 6 images: two batches, the second one short


def build() -> nn.Module:
    """YOLOv8n with BatchNorm statistics of real activations (a fresh model's 0/1 statistics shrink
    activations to nothing layer after layer)."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", verbose=False)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one pass gives the batch statistics
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    return model.eval()


def bn_stats_moved(model: nn.Module, layer: int) -> nn.Module:
    """A copy whose weights all stay, but one layer's BN running statistics moved: frozen by
    `requires_grad` alone, BN left in train mode."""
    out = deepcopy(model)
    with torch.no_grad():
        bn = out.model[layer].bn
        bn.running_mean.mul_(1.1).add_(0.05)
        bn.running_var.mul_(1.2)
    return out


@pytest.fixture(scope="module")
def base() -> nn.Module:
    return build()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Six 96 px images: noise plus a bright rectangle at a different place in each."""
    g = torch.Generator().manual_seed(0)
    batch = torch.rand(6, 3, 96, 96, generator=g) * 0.4
    for k in range(6):
        batch[k, :, 8 * k : 8 * k + 40, 10 + 5 * k : 50 + 5 * k] = torch.rand(3, 1, 1, generator=g) + 0.4
    return batch.clamp(0, 1)


def assert_same(fast: Activations, plain: Activations, rtol: float = 1e-5) -> None:
    """Same layers, CKA features and channel std to float tolerance, relative to each tensor's scale
    (pooled features near 0 differ in their last bits between conv algorithms)."""
    assert fast.features.keys() == plain.features.keys() == set(range(N_LAYERS))
    assert fast.channel_std.keys() == plain.channel_std.keys() == set(range(N_LAYERS))
    for summary in ("features", "channel_std"):
        for i, expected in getattr(plain, summary).items():
            atol = rtol * expected.abs().max().item()
            torch.testing.assert_close(getattr(fast, summary)[i], expected, rtol=rtol, atol=atol)


def assert_identical(a: Activations, b: Activations) -> None:
    """Bit for bit the same summaries."""
    assert a.features.keys() == b.features.keys() and a.channel_std.keys() == b.channel_std.keys()
    assert all(torch.equal(a.features[i], b.features[i]) for i in a.features)
    assert all(torch.equal(a.channel_std[i], b.channel_std[i]) for i in a.channel_std)


def layer_calls(model: nn.Module) -> list[int]:
    """Forward calls per layer, counted by hooks that the folded copies carry along."""
    calls = [0] * len(model.model)

    def count(index: int):
        def hook(*_: object) -> None:
            calls[index] += 1

        return hook

    for i, layer in enumerate(model.model):
        layer.register_forward_hook(count(i))
    return calls


def test_variant_frozen_for_layers_0_to_9_reuses_the_base_and_matches_a_full_pass(
    base: nn.Module, images: torch.Tensor
) -> None:
    variant = perturbed(base, range(10, N_LAYERS), scale=0.1, seed=1)
    # Layers 10 (Upsample) and 11 (Concat) have nothing to train: equal too, the first to differ is 12
    assert shared_prefix(base, variant) == 12
    calls = layer_calls(variant)
    fast_base, fast = collect_models([base, variant], images, batch_size=BATCH)
    assert calls == [0] * 12 + [2] * (N_LAYERS - 12)  # layers 0-11 never ran for the variant
    plain = collect(folded_copy(variant), images, batch_size=BATCH)  # the model's own forward, every layer
    assert_same(fast, plain)
    assert_identical(fast, collect_models([variant], images, batch_size=BATCH)[0])  # alone: no reuse, same bits
    for i in range(10):  # the reused layers are the base's
        assert torch.equal(fast.features[i], fast_base.features[i])
        assert torch.equal(fast.channel_std[i], fast_base.channel_std[i])
    assert not torch.allclose(fast.channel_std[22], fast_base.channel_std[22])


def test_variant_differing_from_layer_0_is_fully_recomputed(base: nn.Module, images: torch.Tensor) -> None:
    variant = perturbed(base, range(0, 1), scale=0.1, seed=1)
    assert shared_prefix(base, variant) == 0
    calls = layer_calls(variant)
    fast_base, fast = collect_models([base, variant], images, batch_size=BATCH)
    assert calls == [2] * N_LAYERS
    assert_same(fast, collect(folded_copy(variant), images, batch_size=BATCH))
    assert not torch.allclose(fast.channel_std[0], fast_base.channel_std[0])


def test_moved_bn_running_stats_make_a_layer_differ(base: nn.Module, images: torch.Tensor) -> None:
    """Weights all equal, BN statistics of layer 3 (a Conv) moved: layers 0-2 reused, 3 on recomputed."""
    variant = bn_stats_moved(base, 3)
    assert all(torch.equal(a, b) for a, b in zip(base.parameters(), variant.parameters(), strict=True))
    assert shared_prefix(base, variant) == 3
    calls = layer_calls(variant)
    fast_base, fast = collect_models([base, variant], images, batch_size=BATCH)
    assert calls == [0] * 3 + [2] * (N_LAYERS - 3)
    assert_same(fast, collect(folded_copy(variant), images, batch_size=BATCH))
    assert not torch.allclose(fast.channel_std[3], fast_base.channel_std[3])


def test_identical_model_takes_everything_from_the_base(base: nn.Module, images: torch.Tensor) -> None:
    twin = deepcopy(base)
    assert shared_prefix(base, twin) == N_LAYERS
    calls = layer_calls(twin)
    fast_base, fast = collect_models([base, twin], images, batch_size=BATCH)
    assert calls == [0] * N_LAYERS
    assert_same(fast, fast_base, rtol=0)


def test_folding_bn_keeps_the_summaries_and_maps(base: nn.Module, images: torch.Tensor) -> None:
    """Folded and unfolded forward passes agree to float rounding, feature maps included."""
    variant = perturbed(base, range(10, N_LAYERS), scale=0.1, seed=1)
    layers = [4, 9, 21]
    folded = collect_models([base, variant], images, batch_size=BATCH, map_image=5, map_layers=layers)
    for model, fast in zip([base, variant], folded, strict=True):
        assert_same(fast, collect(model, images, batch_size=BATCH), rtol=1e-4)
        plain_maps = feature_maps(model, images[5], layers)
        assert fast.maps.keys() == plain_maps.keys() == set(layers)
        for i in layers:
            expected = torch.from_numpy(plain_maps[i])
            atol = 1e-4 * expected.abs().max().item()
            torch.testing.assert_close(torch.from_numpy(fast.maps[i]), expected, rtol=1e-4, atol=atol)


def test_feature_maps_come_with_the_activation_pass_or_from_their_own(base: nn.Module, tmp_path: Path) -> None:
    """The feature image among the calibration images: maps taken during the activation pass; outside
    them (a copy elsewhere): one more forward pass. The same maps either way."""
    rng = np.random.default_rng(0)
    files = []
    for k in range(5):
        files.append(tmp_path / f"{k}.png")
        cv2.imwrite(str(files[-1]), rng.integers(0, 255, (80, 96, 3), dtype=np.uint8))
    outside = tmp_path / "elsewhere" / "2.png"
    outside.parent.mkdir()
    shutil.copy(files[2], outside)
    models = [("base", base), ("v", perturbed(base, range(10, N_LAYERS), scale=0.1, seed=1))]
    checkpoints = [
        Checkpoint(label, tmp_path / f"{label}.pt", m, {}, DeclaredFreeze(frozenset(), "test")) for label, m in models
    ]
    maps = {}
    for image in (files[2], outside):
        options = Options(images=files, imgsz=96, feature_image=image, feature_layers=[4, 15])
        c = run_comparison(checkpoints[0], checkpoints[1:], options)
        assert c.feature_image == image
        maps[image] = c.feature_maps
    for label, _ in models:
        assert maps[files[2]][label].keys() == maps[outside][label].keys() == {4, 15}
        for i in (4, 15):
            expected = torch.from_numpy(maps[outside][label][i])
            atol = 1e-4 * expected.abs().max().item()
            torch.testing.assert_close(torch.from_numpy(maps[files[2]][label][i]), expected, rtol=1e-4, atol=atol)
    assert not np.allclose(maps[outside]["base"][15], maps[outside]["v"][15])  # layer 15 trained: its own maps
