"""PNG plots of a Comparison. Built on matplotlib's Figure (no pyplot): no global state, no GUI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sweep.compare.analysis import Comparison
from sweep.compare.checkpoints import Layer

COLORS = ["#444444", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
DPI = 110


def plot_weight_change(c: Comparison, path: Path) -> Path:
    """Relative change vs base per layer, raw and BN-folded; frozen layers hollow, new ones marked."""
    fig = Figure(figsize=(_width(c.layers), 6.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, field, title in (
        (axes[0], "rel_change", "relative weight change vs base  ||W - W0|| / ||W0||  (all parameters)"),
        (axes[1], "folded_rel_change", "relative change of BN-folded conv weights (what eval mode computes)"),
    ):
        _variant_bars(ax, c, field)
        for ch in {ch.layer.index: ch for v in c.variants for ch in c.vs_base(v) if ch.new_tensors}.values():
            ax.annotate("new", (ch.layer.index, 0), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
        ax.set_title(title, fontsize=9)
    for ax in axes:
        _layer_axis(ax, c.layers)  # sharex: tick labels on the bottom axis only
    return _save(fig, path)


def plot_bn_drift(c: Comparison, path: Path) -> Path:
    """BN running mean / variance drift and gamma / beta change vs base per layer."""
    fig = Figure(figsize=(_width(c.layers), 9), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    panels = (
        ("bn_mean_shift", "running mean shift, mean |mu - mu0| / sqrt(var0 + eps)"),
        ("bn_var_log_ratio", "running variance drift, mean |ln(var / var0)|"),
        ("gamma_change", "gamma change, ||gamma - gamma0|| / ||gamma0||"),
        ("beta_change", "beta change, ||beta - beta0|| / ||gamma0||"),
    )
    for ax, (field, title) in zip(axes, panels, strict=True):
        _variant_bars(ax, c, field)
        ax.set_title(title, fontsize=9)
    for ax in axes:
        _layer_axis(ax, c.layers)  # sharex: tick labels on the bottom axis only
    return _save(fig, path)


def plot_distributions(c: Comparison, path: Path) -> Path:
    """Violin plots of conv weights per layer, models side by side, one row per section."""
    sections = list(dict.fromkeys(la.section for la in c.layers))
    fig = Figure(figsize=(_width(c.layers), 3.2 * len(sections)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(sections), 1))
    n = len(c.models)
    width = 0.8 / n
    for ax, section in zip(axes, sections, strict=True):
        layers = [la for la in c.layers if la.section == section]
        row_values = []
        for k, m in enumerate(c.models):
            data = [(la.index, c.samples[m.label][la.index]) for la in layers if c.samples[m.label][la.index].size]
            if not data:
                continue
            positions = [i + (k - (n - 1) / 2) * width for i, _ in data]
            parts = ax.violinplot([d for _, d in data], positions=positions, widths=width, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(_color(k))
                body.set_alpha(0.7)
            ax.plot([], [], color=_color(k), lw=6, label=m.label)
            row_values += [d for _, d in data]
        if row_values:
            low, high = np.percentile(np.concatenate(row_values), [0.5, 99.5])
            ax.set_ylim(low, high)
        ax.set_title(f"{section}: conv weight distributions", fontsize=9)
        ax.legend(fontsize=7, ncol=n)
        _layer_axis(ax, layers)
    return _save(fig, path)


def plot_dead_channels(c: Comparison, path: Path) -> Path:
    """Dead channel counts per layer: by BN-folded weights and, with images, by activation std."""
    panels = [("BN-folded weight norm ~ 0 against the conv's median channel", c.dead_weight)]
    if c.dead_act:
        act = {m.label: [c.dead_act[m.label].get(la.index) for la in c.layers] for m in c.models}
        panels.append(("activation std ~ 0 on the calibration images (constant channel)", act))
    fig = Figure(figsize=(_width(c.layers), 3.2 * len(panels)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True))
    for ax, (title, counts) in zip(axes, panels, strict=True):
        for k, m in enumerate(c.models):
            values = [count.dead if count else 0 for count in counts[m.label]]
            _bars(ax, c, k, values, _color(k), [False] * len(values), m.label, n_groups=len(c.models))
        ax.set_title(f"dead channels, {title}", fontsize=9)
        ax.set_ylabel("channels")
        ax.legend(fontsize=7)
    for ax in axes:
        _layer_axis(ax, c.layers)  # sharex: tick labels on the bottom axis only
    return _save(fig, path)


def plot_pairs(c: Comparison, path: Path) -> Path:
    """Heatmaps, pairs x layers: BN-folded relative weight change and (with images) activation CKA."""
    change = {p: {ch.layer.index: ch.folded_rel_change for ch in c.changes[p]} for p in c.pairs}
    panels = [("relative change of BN-folded weights (0 = identical)", change, "magma_r", None)]
    if c.cka:
        panels.append((f"activation CKA, debiased linear, {len(c.images)} images (1 = identical)", c.cka, "viridis", 1))
    fig = Figure(figsize=(_width(c.layers), (2.4 + 0.35 * len(c.pairs)) * len(panels)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1))
    for ax, (title, values, cmap, vmax) in zip(axes, panels, strict=True):
        grid = np.array([[values[p].get(la.index, math.nan) for la in c.layers] for p in c.pairs], dtype=float)
        top = vmax if vmax is not None else max(float(np.nanmax(grid, initial=0.0)), 1e-12)
        image = ax.imshow(grid, vmin=0, vmax=top, cmap=cmap, aspect="auto")
        for (r, col), v in np.ndenumerate(grid):
            if not math.isnan(v):
                dark = (v / top < 0.6) if cmap == "viridis" else (v / top > 0.5)
                ax.text(col, r, f"{v:.2g}", ha="center", va="center", fontsize=6, color="white" if dark else "black")
        ax.set_yticks(range(len(c.pairs)), [f"{a} vs {b}" for a, b in c.pairs], fontsize=7)
        ax.set_title(title, fontsize=9)
        _layer_axis(ax, c.layers)
        fig.colorbar(image, ax=ax, fraction=0.02, aspect=10)
    return _save(fig, path)


def plot_cka_matrices(c: Comparison, path: Path) -> Path:
    """Model x model CKA at the end of the backbone, the neck and the head."""
    ends = c.section_ends()
    labels = [m.label for m in c.models]
    fig = Figure(figsize=(4 * len(ends), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(ends)))
    for ax, (section, layer) in zip(axes, ends.items(), strict=True):
        matrix = np.eye(len(labels))
        for (a, b), per_layer in c.cka.items():
            value = per_layer.get(layer.index, math.nan)
            matrix[labels.index(a), labels.index(b)] = matrix[labels.index(b), labels.index(a)] = value
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        for (r, col), v in np.ndenumerate(matrix):
            ax.text(col, r, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.6 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(f"CKA, end of {section} ({layer.name})", fontsize=9)
    fig.colorbar(image, ax=list(axes), fraction=0.03)
    return _save(fig, path)


def plot_feature_maps(c: Comparison, layer: Layer, path: Path, channels: int = 16) -> Path:
    """The first channels of one layer for one image, models side by side, one colour scale."""
    mosaics = {m.label: _mosaic(c.feature_maps[m.label][layer.index][:channels]) for m in c.models}
    values = np.concatenate([mo[~np.isnan(mo)] for mo in mosaics.values()])
    vmin, vmax = np.percentile(values, [1, 99])
    fig = Figure(figsize=(3.2 * len(mosaics) + 1, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(mosaics)))
    for ax, (label, mosaic) in zip(axes, mosaics.items(), strict=True):
        image = ax.imshow(mosaic, vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.colorbar(image, ax=list(axes), fraction=0.03)
    image_name = c.feature_image.name if c.feature_image else ""
    fig.suptitle(f"{layer.name}: first {channels} channels, {image_name}", fontsize=9)
    return _save(fig, path)


def _mosaic(maps: np.ndarray) -> np.ndarray:
    """Tile (C, H, W) maps into one square-ish grid, NaN between tiles."""
    n, h, w = maps.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan, dtype=np.float32)
    for i, m in enumerate(maps):
        r, col = divmod(i, cols)
        out[r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = m
    return out


def _variant_bars(ax: Axes, c: Comparison, field: str) -> None:
    """One bar per variant and layer for a LayerChange field vs base; frozen layers hollow."""
    for k, v in enumerate(c.variants):
        changes = c.vs_base(v)
        values = [_finite(getattr(ch, field)) for ch in changes]
        _bars(ax, c, k, values, _color(k + 1), [ch.frozen for ch in changes], v.label)
    ax.legend(fontsize=7, title="hollow = frozen", title_fontsize=7)


def _bars(
    ax: Axes,
    c: Comparison,
    k: int,
    values: list[float],
    color: str,
    hollow: list[bool],
    label: str,
    n_groups: int | None = None,
) -> None:
    """Bar group k of n_groups (default: one per variant) at each layer position."""
    n = n_groups or len(c.variants)
    width = 0.8 / n
    x = np.array([la.index for la in c.layers]) + (k - (n - 1) / 2) * width
    faces = ["none" if h else color for h in hollow]
    ax.bar(x, values, width=width, color=faces, edgecolor=color, linewidth=0.8, label=label)


def _layer_axis(ax: Axes, layers: list[Layer]) -> None:
    """Layer names on x, dashed lines between backbone, neck and head."""
    ax.set_xticks([la.index for la in layers], [la.name for la in layers], rotation=90, fontsize=7)
    ax.set_xlim(layers[0].index - 0.6, layers[-1].index + 0.6)
    for prev, nxt in zip(layers, layers[1:], strict=False):
        if prev.section != nxt.section:
            ax.axvline(prev.index + 0.5, color="grey", linestyle="--", linewidth=0.8)


def _width(layers: list[Layer]) -> float:
    return max(8.0, 0.42 * len(layers) + 2)


def _color(k: int) -> str:
    return COLORS[k % len(COLORS)]


def _finite(value: float) -> float:
    return 0.0 if math.isnan(value) or math.isinf(value) else value


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
