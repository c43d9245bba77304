"""Run every comparison stage on loaded checkpoints and keep the numbers in one `Comparison`.

Pairs are (reference, other): the base against each variant (frozen layers: as declared, plus
those found unchanged, see `frozen`), then each pair of variants (no frozen check: both are
checked against the base already).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from sweep.compare.activations import collect_models, feature_maps
from sweep.compare.checkpoints import Checkpoint, CompareError, Layer, check_same_architecture
from sweep.compare.cka import center_unbiased, cka_from_centered, linear_gram
from sweep.compare.dead import DeadChannels, dead_by_activation, dead_by_weights
from sweep.compare.frozen import FrozenLayers, find_frozen
from sweep.compare.images import load_images
from sweep.compare.weights import LayerChange, compare_models, weight_samples


@dataclass
class Options:
    """What to compute beyond the weights; no images means no activation stages."""

    images: list[Path] = field(default_factory=list)
    imgsz: int = 640
    cka_grid: int = 4
    dead_weight: float = 1e-2  # BN-folded channel weight norm below this x its conv's median: dead
    dead_act: float = 1e-2  # channel std below this x the layer's mean channel std: dead
    feature_layers: list[int] | None = None  # None: middle and end of the backbone, end of the neck
    feature_image: Path | None = None  # None: the first calibration image
    weight_samples: int = 5000  # per layer and model, for the distribution plots
    batch_size: int = 16


@dataclass
class Comparison:
    base: Checkpoint
    variants: list[Checkpoint]
    layers: list[Layer]
    changes: dict[tuple[str, str], list[LayerChange]]  # (reference, other) -> per layer
    frozen: dict[str, FrozenLayers]  # variant label -> declared, found and checked frozen layers
    dead_weight: dict[str, list[DeadChannels]]  # model label -> per layer
    samples: dict[str, list[np.ndarray]]  # model label -> per layer weight sample
    images: list[Path]
    imgsz: int
    dead_act: dict[str, dict[int, DeadChannels]] = field(default_factory=dict)  # model -> layer -> channels
    cka: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)  # pair -> layer -> CKA
    feature_maps: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)  # model -> layer -> CHW
    feature_image: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[Checkpoint]:
        return [self.base, *self.variants]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(self.base.label, v.label) for v in self.variants] + [
            (a.label, b.label) for a, b in combinations(self.variants, 2)
        ]

    def vs_base(self, variant: Checkpoint) -> list[LayerChange]:
        return self.changes[(self.base.label, variant.label)]

    def section_ends(self) -> dict[str, Layer]:
        """The last layer of the backbone, the neck and the head."""
        return {layer.section: layer for layer in self.layers}


def run_comparison(base: Checkpoint, variants: list[Checkpoint], options: Options) -> Comparison:
    """Weights, BN, dead channels and distributions always; activations when there are images."""
    timings: dict[str, float] = {}
    models = [base, *variants]
    with timed(timings, "architecture check"):
        layers = check_same_architecture(models)
    feature_layers = _feature_layers(layers, options) if options.images else []
    with timed(timings, "weights and BN"):
        changes = {(base.label, v.label): compare_models(base.layers, v.layers, layers) for v in variants}
        frozen = {v.label: find_frozen(changes[(base.label, v.label)], v.declared) for v in variants}
        for a, b in combinations(variants, 2):
            changes[(a.label, b.label)] = compare_models(a.layers, b.layers, layers)
    with timed(timings, "dead channels (weights)"):
        dead_weight = {
            m.label: [dead_by_weights(m.layers[la.index], options.dead_weight) for la in layers] for m in models
        }
    with timed(timings, "distributions"):
        samples = {m.label: [weight_samples(layer, options.weight_samples) for layer in m.layers] for m in models}
    comparison = Comparison(
        base=base,
        variants=variants,
        layers=layers,
        changes=changes,
        frozen=frozen,
        dead_weight=dead_weight,
        samples=samples,
        images=list(options.images),
        imgsz=options.imgsz,
        timings=timings,
    )
    if options.images:
        _add_activation_stages(comparison, options, feature_layers)
    else:
        comparison.notes.append("no calibration images: activation dead channels, CKA and feature maps skipped")
    return comparison


def default_feature_layers(layers: list[Layer]) -> list[int]:
    """Middle and end of the backbone and the end of the neck: early, mid and late features."""
    backbone = [la.index for la in layers if la.section == "backbone"]
    neck = [la.index for la in layers if la.section == "neck"]
    chosen = [backbone[len(backbone) // 2], backbone[-1]] if backbone else []
    return sorted(set(chosen + neck[-1:]))


def _feature_layers(layers: list[Layer], options: Options) -> list[int]:
    """Check the activation options before any work; return the feature-map layers."""
    if len(options.images) < 4:
        raise CompareError(f"debiased CKA needs at least 4 calibration images, got {len(options.images)}")
    chosen = options.feature_layers if options.feature_layers is not None else default_feature_layers(layers)
    head = layers[-1].index
    if any(i < 0 or i >= head for i in chosen):
        raise CompareError(f"--feature-layers {chosen}: give layer indices 0..{head - 1} (the head has no feature map)")
    return chosen


def _add_activation_stages(comparison: Comparison, options: Options, feature_layers: list[int]) -> None:
    layers, timings = comparison.layers, comparison.timings
    with timed(timings, "load images"):
        batch = load_images(comparison.images, options.imgsz)
        comparison.feature_image = options.feature_image or comparison.images[0]
        map_image = _index_of(comparison.feature_image, comparison.images)
    grams = {}
    with timed(timings, "activations"):
        models = comparison.models
        all_acts = collect_models(
            [m.model for m in models],
            batch,
            grid=options.cka_grid,
            batch_size=options.batch_size,
            map_image=map_image,
            map_layers=feature_layers,
        )
        for model, acts in zip(models, all_acts, strict=True):
            comparison.dead_act[model.label] = {
                i: dead_by_activation(std, options.dead_act)
                for i, std in acts.channel_std.items()
                if _has_weights(model.layers[i])
            }
            grams[model.label] = {i: center_unbiased(linear_gram(f)) for i, f in acts.features.items()}
            if map_image is not None:
                comparison.feature_maps[model.label] = acts.maps
    with timed(timings, "CKA"):
        for a, b in comparison.pairs:
            shared = [la.index for la in layers if la.index in grams[a] and la.index in grams[b]]
            comparison.cka[(a, b)] = {i: cka_from_centered(grams[a][i], grams[b][i]) for i in shared}
    with timed(timings, "feature maps"):
        if map_image is None:  # an image outside the calibration set: one more forward pass per model
            image = load_images([comparison.feature_image], options.imgsz)[0]
            for model in comparison.models:
                comparison.feature_maps[model.label] = feature_maps(model.model, image, feature_layers)


def _index_of(image: Path, images: list[Path]) -> int | None:
    """Where the feature-map image is among the calibration images: its maps then come with the
    activations pass, no extra forward pass."""
    resolved = [p.resolve() for p in images]
    return resolved.index(image.resolve()) if image.resolve() in resolved else None


def _has_weights(layer) -> bool:
    """Concat and Upsample only pass on other layers' channels: counting them again would double-count."""
    return any(p.numel() for p in layer.parameters())


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
