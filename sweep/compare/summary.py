"""The terminal summary: frozen-layer check, most changed layers, new layers, dead channels, CKA."""

from __future__ import annotations

import math
from collections.abc import Iterable

from sweep.compare.analysis import Comparison
from sweep.compare.checkpoints import Checkpoint


def fmt(value: float, digits: int = 3) -> str:
    """A number for tables: 3 significant digits, '-' for missing."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def ranges(indices: Iterable[int]) -> str:
    """Layer indices as compact ranges: '0-9, 12'; 'none' when empty."""
    values = sorted(set(indices))
    if not values:
        return "none"
    parts, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns, as lines."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]


def summary_text(comparison: Comparison, top: int = 5) -> str:
    c = comparison
    lines = [f"Base: {c.base.label} = {c.base.path} ({c.base.architecture})"]
    lines += [f"Variant: {v.label} = {v.path}, frozen layers: {ranges(v.frozen)}" for v in c.variants]
    if c.images:
        lines.append(f"Calibration: {len(c.images)} images at {c.imgsz} px")
    lines += [f"Note: {note}" for note in c.notes]
    lines += ["", "Frozen layers (must be unchanged; FP16 tolerance)", *_frozen_check(c)]
    lines += ["", f"Most changed layers vs base (top {top})", *_most_changed(c, top)]
    new = _new_layers(c)
    if new:
        lines += ["", "New tensors (shape differs from the base: re-initialised, not counted as change)", *new]
    lines += ["", "Dead channels", *_dead_channels(c)]
    if c.cka:
        lines += ["", f"Activation similarity: debiased linear CKA on {len(c.images)} images", *_cka(c)]
    return "\n".join(lines)


def _most_changed(c: Comparison, top: int) -> list[str]:
    rows = []
    for v in c.variants:
        changed = [ch for ch in c.vs_base(v) if ch.rel_change > 0 or ch.folded_rel_change > 0]
        for ch in sorted(changed, key=lambda ch: ch.rel_change, reverse=True)[:top]:
            rows.append([v.label, ch.layer.name, fmt(ch.rel_change), fmt(ch.folded_rel_change), fmt(ch.cosine, 6)])
        if not changed:
            rows.append([v.label, "no layer changed", "", "", ""])
    return table(["variant", "layer", "||W-W0||/||W0||", "BN-folded", "cosine"], rows)


def _new_layers(c: Comparison) -> list[str]:
    return [
        f"  {v.label}: {ch.layer.name}: {len(ch.new_tensors)} of {ch.n_tensors} tensors new"
        for v in c.variants
        for ch in c.vs_base(v)
        if ch.new_tensors
    ]


def _dead_channels(c: Comparison) -> list[str]:
    """Totals per model, then the layers where a variant has more dead channels than the base."""
    methods = {"BN |gamma|/sqrt(var+eps) small": {m.label: dict(enumerate(c.dead_bn[m.label])) for m in c.models}}
    if c.dead_act:
        methods["activation std ~ 0"] = c.dead_act
    rows = [[m.label] + [_dead_total(counts[m.label].values()) for counts in methods.values()] for m in c.models]
    lines = table(["model", *methods], rows)
    for method, counts in methods.items():
        base = counts[c.base.label]
        for v in c.variants:
            more = [
                f"{c.layers[i].name} +{n.dead - base[i].dead}"
                for i, n in counts[v.label].items()
                if n.dead > base[i].dead
            ]
            if more:
                lines.append(f"  {v.label}, more dead than base ({method}): {', '.join(more)}")
    return lines


def _cka(c: Comparison) -> list[str]:
    ends = c.section_ends()
    header = ["pair"] + [f"end of {s} ({la.name})" for s, la in ends.items()]
    rows = [
        [f"{a} vs {b}"] + [fmt(c.cka[(a, b)].get(la.index, math.nan), 4) for la in ends.values()] for a, b in c.pairs
    ]
    return table(header, rows)


def frozen_violations(comparison: Comparison, variant: Checkpoint) -> list[str]:
    """One line per frozen layer of `variant` that is not what it was in the base."""
    return [
        f"{variant.label}: {ch.layer.name} is frozen but {ch.frozen_violation} "
        f"(relative change {fmt(ch.rel_change)}, BN mean shift {fmt(ch.bn_mean_shift)} sd)"
        for ch in comparison.vs_base(variant)
        if ch.frozen_violation
    ]


def _frozen_check(c: Comparison) -> list[str]:
    lines = []
    for v in c.variants:
        bad = frozen_violations(c, v)
        if bad:
            lines += [f"  WARNING {line}" for line in bad]
        elif v.frozen:
            lines.append(f"  {v.label}: layers {ranges(v.frozen)} unchanged (weights and BN running statistics)")
        else:
            lines.append(f"  {v.label}: no frozen layers")
    return lines


def _dead_total(counts: Iterable) -> str:
    counts = list(counts)
    return f"{sum(x.dead for x in counts)} / {sum(x.total for x in counts)}"
