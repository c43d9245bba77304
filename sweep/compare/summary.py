"""The terminal summary: the answer in words, then the frozen-layer check, most changed layers,
new layers, dead channels and CKA at the section ends."""

from __future__ import annotations

import math
import textwrap

from sweep.compare.analysis import Comparison
from sweep.compare.answer import paragraphs
from sweep.compare.checkpoints import Checkpoint
from sweep.compare.frozen import spanned
from sweep.compare.text import fmt, ranges, table


def summary_text(comparison: Comparison, top: int = 5, words: bool = True) -> str:
    """The whole summary; `words=False` leaves out the paragraphs (the page shows them as text)."""
    c = comparison
    lines = [f"Base: {c.base.label} = {c.base.path} ({c.base.architecture})"]
    lines += [f"Variant: {v.label} = {v.path}, frozen layers: {_frozen_ranges(c, v)}" for v in c.variants]
    if c.images:
        lines.append(f"Calibration: {len(c.images)} images at {c.imgsz} px")
    lines += [f"Note: {note}" for note in c.notes]
    lines.append("")
    if words:
        lines.append("In words")
        for paragraph in paragraphs(c):
            lines += [
                *textwrap.wrap(paragraph, 110, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False),
                "",
            ]
    lines += ["Frozen layers (must be unchanged; FP16 tolerance)", *_frozen_check(c)]
    lines += ["", f"Most changed layers vs base (top {top}, by BN-folded relative change)", *_most_changed(c, top)]
    new = _new_layers(c)
    if new:
        lines += ["", "New tensors (shape differs from the base: re-initialised, not counted as change)", *new]
    lines += ["", "Dead channels (gained / lost: dead here and not in the base / dead in the base and not here)"]
    lines += _dead_channels(c)
    if c.cka:
        lines += ["", f"Activation similarity: debiased linear CKA on {len(c.images)} images", *_cka(c)]
    return "\n".join(lines)


def _frozen_ranges(c: Comparison, v: Checkpoint) -> str:
    frozen = c.frozen[v.label]
    return f"{ranges(spanned(frozen.used, frozen.weightless))} ({frozen.declared.source})"


def _most_changed(c: Comparison, top: int) -> list[str]:
    rows = []
    for v in c.variants:
        changed = [ch for ch in c.vs_base(v) if ch.change > 0]
        for ch in sorted(changed, key=lambda ch: ch.change, reverse=True)[:top]:
            rows.append([v.label, ch.layer.name, fmt(ch.folded_rel_change), fmt(ch.rel_change), fmt(ch.cosine, 6)])
        if not changed:
            rows.append([v.label, "no layer changed", "", "", ""])
    return table(["variant", "layer", "BN-folded", "||W-W0||/||W0||", "cosine"], rows)


def _new_layers(c: Comparison) -> list[str]:
    return [
        f"  {v.label}: {ch.layer.name}: {len(ch.new_tensors)} of {ch.n_tensors} tensors new"
        for v in c.variants
        for ch in c.vs_base(v)
        if ch.new_tensors
    ]


def _dead_channels(c: Comparison) -> list[str]:
    """Totals per model and, for variants, gained and lost against the base, by each criterion."""
    methods = {"by BN-folded weights": {m.label: dict(enumerate(c.dead_weight[m.label])) for m in c.models}}
    if c.dead_act:
        methods["by activation std"] = c.dead_act
    rows = []
    for m in c.models:
        row = [m.label]
        for counts in methods.values():
            mine = counts[m.label]
            total = f"{sum(x.dead for x in mine.values())} / {sum(x.total for x in mine.values())}"
            if m is not c.base:
                base = counts[c.base.label]
                pairs = [mine[i].gained_lost(base[i]) for i in mine if i in base]
                total += f" (+{sum(g for g, _ in pairs)} / -{sum(lo for _, lo in pairs)})"
            row.append(total)
        rows.append(row)
    return table(["model", *methods], rows)


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
        frozen = c.frozen[v.label]
        bad = frozen_violations(c, v)
        if bad:
            lines += [f"  WARNING {line}" for line in bad]
        elif frozen.used:
            lines.append(
                f"  {v.label}: layers {ranges(spanned(frozen.used, frozen.weightless))} unchanged "
                "(weights and BN running statistics)"
            )
        else:
            lines.append(f"  {v.label}: no frozen layers")
        if frozen.undeclared and not frozen.declared.override:
            lines.append(
                f"  {v.label}: layers {ranges(spanned(frozen.undeclared, frozen.weightless))} found frozen "
                "(parameters equal the base's), "
                f"not declared by {frozen.declared.source}"
            )
    return lines
