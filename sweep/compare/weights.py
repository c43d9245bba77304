"""Weight change, BatchNorm drift and weight samples per layer, between two checkpoints.

Raw weight norms mislead under BatchNorm (a conv followed by BN is scale-invariant) and weight
decay, so every layer gets the relative change ||W - W0|| / ||W0||, the cosine similarity, and
the same on BN-folded effective weights (what the layer computes in eval mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sweep.compare.checkpoints import Layer

# Checkpoints hold FP16 weights (half an FP16 step is ~4.9e-4 relative): an element counts as
# unchanged when |w - w0| <= ATOL + RTOL * |w0|.
RTOL = 1e-3
ATOL = 1e-6


@dataclass
class LayerChange:
    """How one layer of `other` differs from the same layer of `reference`."""

    layer: Layer
    n_tensors: int  # parameter tensors in the layer
    frozen: bool = False  # the layer did not train (declared or found; see sweep.compare.frozen)
    new_tensors: list[str] = field(default_factory=list)  # shape differs: re-initialised, not changed
    rel_change: float = math.nan  # ||W - W0|| / ||W0|| over all matched parameters
    cosine: float = math.nan
    folded_rel_change: float = math.nan  # the same on BN-folded conv weights and biases
    moved: bool = False  # some matched parameter is outside the FP16 tolerance
    bn_stats_moved: bool = False  # some BN running mean/var is outside the FP16 tolerance
    bn_mean_shift: float = math.nan  # mean |mu - mu0| / sqrt(var0 + eps), in base std units
    bn_var_log_ratio: float = math.nan  # mean |ln((var + eps) / (var0 + eps))|
    gamma_change: float = math.nan  # ||gamma - gamma0|| / ||gamma0||
    beta_change: float = math.nan  # ||beta - beta0|| / ||gamma0|| (beta0 is often 0)

    @property
    def change(self) -> float:
        """The scale-free change used to rank layers: BN-folded relative change (what eval mode
        computes, blind to BN's scale invariance), else the relative change of the parameters."""
        return self.folded_rel_change if math.isfinite(self.folded_rel_change) else self.rel_change

    @property
    def frozen_violation(self) -> str:
        """Why a frozen layer is not what it was, or '' when it is."""
        if not self.frozen:
            return ""
        reasons = [
            text
            for flag, text in ((self.moved, "weights moved"), (self.bn_stats_moved, "BN running stats moved"))
            if flag
        ]
        return ", ".join(reasons)

    @property
    def status(self) -> str:
        if self.n_tensors == 0:
            return "no weights"
        if len(self.new_tensors) == self.n_tensors:
            return "new"
        if self.frozen:
            return f"frozen, {self.frozen_violation}" if self.frozen_violation else "frozen"
        changed = "changed" if self.moved or self.bn_stats_moved else "unchanged"
        return f"{changed}, {len(self.new_tensors)} new tensors" if self.new_tensors else changed


def compare_layer(reference: nn.Module, other: nn.Module, layer: Layer) -> LayerChange:
    """Compare one layer; parameters whose shape differs are listed as new, not compared."""
    ref_params = dict(reference.named_parameters())
    other_params = dict(other.named_parameters())
    new = [name for name, p in other_params.items() if name not in ref_params or ref_params[name].shape != p.shape]
    matched = [name for name in other_params if name not in new]
    change = LayerChange(layer=layer, n_tensors=len(other_params), new_tensors=new)
    if matched:
        change.rel_change, change.cosine, change.moved = _tensor_change(
            [ref_params[name] for name in matched], [other_params[name] for name in matched]
        )
        ref_folded, other_folded = folded_weights(reference), folded_weights(other)
        keys = [k for k in other_folded if k in ref_folded and ref_folded[k].shape == other_folded[k].shape]
        if keys:
            change.folded_rel_change, _, _ = _tensor_change(
                [ref_folded[k] for k in keys], [other_folded[k] for k in keys]
            )
    _add_bn_drift(change, reference, other)
    return change


def compare_models(reference: nn.Sequential, other: nn.Sequential, layers: list[Layer]) -> list[LayerChange]:
    """Compare every layer of two layer sequences (`model.model`)."""
    return [compare_layer(reference[la.index], other[la.index], la) for la in layers]


def folded_weights(layer: nn.Module) -> dict[str, torch.Tensor]:
    """Effective conv weights and biases with each Conv-BN pair folded, as in eval mode.

    Plain convs (the Detect output convs) are returned as they are.
    """
    out: dict[str, torch.Tensor] = {}
    paired: set[int] = set()
    for name, module in layer.named_modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and conv.weight.shape[0] == bn.num_features:
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
            out[f"{name}.weight"] = conv.weight.detach() * scale.view(-1, 1, 1, 1)
            out[f"{name}.bias"] = bn.bias.detach() + (bias - bn.running_mean) * scale
            paired.add(id(conv))
    for name, module in layer.named_modules():
        if isinstance(module, nn.Conv2d) and id(module) not in paired:
            out[f"{name}.weight"] = module.weight.detach()
            if module.bias is not None:
                out[f"{name}.bias"] = module.bias.detach()
    return out


def weight_samples(layer: nn.Module, max_values: int, seed: int = 0) -> np.ndarray:
    """A random sample of the layer's conv/linear weights (tensors with 2+ dims), for plots."""
    tensors = [p.detach().flatten() for p in layer.parameters() if p.dim() >= 2]
    if not tensors:
        return np.empty(0, dtype=np.float32)
    values = torch.cat(tensors).float().numpy()
    if values.size <= max_values:
        return values
    return values[np.random.default_rng(seed).integers(0, values.size, max_values)]


def _tensor_change(w0: list[torch.Tensor], w: list[torch.Tensor]) -> tuple[float, float, bool]:
    """Relative change, cosine similarity, and whether any element is outside the FP16 tolerance.

    Tensor by tensor, with sums accumulated in float64: no concatenated copy of the layer.
    """
    norm0_sq = norm_sq = diff_sq = dot = 0.0
    moved = False
    for a, b in zip(w0, w, strict=True):
        a, b = a.detach().float(), b.detach().float()
        diff = b - a
        norm0_sq += torch.sum(a * a, dtype=torch.float64).item()
        norm_sq += torch.sum(b * b, dtype=torch.float64).item()
        diff_sq += torch.sum(diff * diff, dtype=torch.float64).item()
        dot += torch.sum(a * b, dtype=torch.float64).item()
        moved = moved or bool((diff.abs() > ATOL + RTOL * a.abs()).any())
    norm0, norm, diff_norm = math.sqrt(norm0_sq), math.sqrt(norm_sq), math.sqrt(diff_sq)
    rel = diff_norm / norm0 if norm0 > 0 else (0.0 if diff_norm == 0 else math.inf)
    cos = min(1.0, max(-1.0, dot / (norm0 * norm))) if norm0 > 0 and norm > 0 else math.nan
    return rel, cos, moved


def _add_bn_drift(change: LayerChange, reference: nn.Module, other: nn.Module) -> None:
    """Fill the BN fields from every BatchNorm2d of the layer whose shape matches the reference."""
    ref_bns = {n: m for n, m in reference.named_modules() if isinstance(m, nn.BatchNorm2d)}
    pairs = [
        (ref_bns[n], m)
        for n, m in other.named_modules()
        if isinstance(m, nn.BatchNorm2d) and n in ref_bns and ref_bns[n].num_features == m.num_features
    ]
    if not pairs:
        return
    shifts, log_ratios = [], []
    gamma0, gamma, beta0, beta = [], [], [], []
    for bn0, bn in pairs:
        std0 = torch.sqrt(bn0.running_var.double() + bn0.eps)
        shifts.append((bn.running_mean.double() - bn0.running_mean.double()).abs() / std0)
        log_ratios.append(torch.log((bn.running_var.double() + bn.eps) / (bn0.running_var.double() + bn0.eps)).abs())
        gamma0.append(bn0.weight.detach().double())
        gamma.append(bn.weight.detach().double())
        beta0.append(bn0.bias.detach().double())
        beta.append(bn.bias.detach().double())
    stats = ("running_mean", "running_var")
    _, _, change.bn_stats_moved = _tensor_change(
        [getattr(bn0, st) for bn0, _ in pairs for st in stats], [getattr(bn, st) for _, bn in pairs for st in stats]
    )
    change.bn_mean_shift = torch.cat(shifts).mean().item()
    change.bn_var_log_ratio = torch.cat(log_ratios).mean().item()
    g0, g, b0, b = torch.cat(gamma0), torch.cat(gamma), torch.cat(beta0), torch.cat(beta)
    gamma_norm = g0.norm().item()
    change.gamma_change = (g - g0).norm().item() / gamma_norm if gamma_norm > 0 else math.nan
    change.beta_change = (b - b0).norm().item() / gamma_norm if gamma_norm > 0 else math.nan
