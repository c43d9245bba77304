"""The answer in words: one short paragraph per variant, printed first in the terminal and at the
top of index.html.

It answers the question a user brings (how do the variants differ from the base and from each
other, which channels died, did the frozen layers stay frozen) from the numbers in a
`Comparison`: the layers that changed most (BN-folded relative change), the frozen-layer check,
dead channels gained and lost against the base, and where the CKA profile along backbone, neck
and head falls below `DIVERGED`.
"""

from __future__ import annotations

import math
import statistics

from sweep.compare.analysis import Comparison
from sweep.compare.checkpoints import Checkpoint
from sweep.compare.frozen import FrozenLayers, spanned
from sweep.compare.text import fmt, ranges

DIVERGED = 0.9  # CKA below this: the representations are no longer the same up to rotation and scale
MOST_CHANGED = 3


def paragraphs(c: Comparison) -> list[str]:
    """One paragraph per variant."""
    return [variant_paragraph(c, v) for v in c.variants]


def variant_paragraph(c: Comparison, v: Checkpoint) -> str:
    sentences = [f"{v.label} (against {c.base.label}):", frozen_sentence(c, v), changed_sentence(c, v)]
    sentences.append(dead_sentence(c, v))
    sentences += cka_sentences(c, v)
    return " ".join(s for s in sentences if s)


def frozen_sentence(c: Comparison, v: Checkpoint) -> str:
    frozen = c.frozen[v.label]
    changes = {ch.layer.index: ch for ch in c.vs_base(v)}
    weights_moved = sorted(i for i in frozen.used if changes[i].moved)
    bn_moved = sorted(i for i in frozen.used if changes[i].bn_stats_moved and not changes[i].moved)
    if not frozen.used:
        given = (
            f"as given by {frozen.declared.source}" if frozen.declared.override else "every layer with weights changed"
        )
        return f"no frozen layers ({given})."
    text = f"layers {_span(frozen.used, frozen)} {_frozen_origin(frozen)}"
    if weights_moved:
        text += f"; WARNING: weights moved in layers {_span(set(weights_moved), frozen)}, so they did not stay frozen"
    else:
        text += "; verified: their weights equal the base's"
    if bn_moved:
        worst = max(bn_moved, key=lambda i: changes[i].bn_mean_shift)
        text += (
            f"; WARNING: BatchNorm running statistics moved in {_span(frozen.used & set(bn_moved), frozen)} "
            f"(up to {fmt(changes[worst].bn_mean_shift, 2)} sd at {changes[worst].layer.name}): BN stayed in "
            "train mode, so these layers no longer compute what the base computed"
        )
    elif not weights_moved:
        text += " and so do their BN running statistics"
    return text + "."


def _frozen_origin(frozen: FrozenLayers) -> str:
    declared = frozen.declared
    if declared.override:
        return f"are frozen as given by {declared.source}"
    if not declared.layers:
        return f"were frozen: found unchanged, not recorded ({declared.source})"
    extra = f", and layers {_span(frozen.undeclared, frozen)} were found unchanged too" if frozen.undeclared else ""
    return f"were frozen ({declared.source}){extra}"


def changed_sentence(c: Comparison, v: Checkpoint) -> str:
    trained = [ch for ch in c.vs_base(v) if ch.n_tensors and not ch.frozen and math.isfinite(ch.change)]
    if not trained:
        return "No layer trained."
    top = sorted(trained, key=lambda ch: ch.change, reverse=True)[:MOST_CHANGED]
    listed = ", ".join(f"{ch.layer.name} ({ch.layer.section}) {fmt(ch.change, 2)}" for ch in top)
    medians = []
    for section in dict.fromkeys(la.section for la in c.layers):
        values = [ch.change for ch in trained if ch.layer.section == section]
        if values:
            medians.append(f"{section} {fmt(statistics.median(values), 2)}")
    return f"Changed most (BN-folded relative change): {listed}; median per section: {', '.join(medians)}."


def dead_sentence(c: Comparison, v: Checkpoint) -> str:
    parts = [f"by weights {_gained_lost(c.dead_weight[c.base.label], c.dead_weight[v.label])}"]
    if c.dead_act:
        base, variant = c.dead_act[c.base.label], c.dead_act[v.label]
        shared = [i for i in variant if i in base]
        parts.append(f"by activations {_gained_lost([base[i] for i in shared], [variant[i] for i in shared])}")
    return f"Dead channels against the base: {'; '.join(parts)}."


def _gained_lost(base: list, variant: list) -> str:
    gained = lost = 0
    for b, x in zip(base, variant, strict=True):
        g, lo = x.gained_lost(b)
        gained, lost = gained + g, lost + lo
    dead, total = sum(x.dead for x in variant), sum(x.total for x in variant)
    return f"{gained} gained, {lost} lost ({dead} of {total:,} dead, base {sum(b.dead for b in base)})"


def cka_sentences(c: Comparison, v: Checkpoint) -> list[str]:
    if not c.cka:
        return ["Representations not compared (no calibration images)."]
    sentences = [f"Representations (debiased CKA, mean per section) against the base: {_profile(c, c.base, v)}."]
    others = [o for o in c.variants if o is not v]
    if others:
        sentences.append(f"Against {'; against '.join(f'{o.label}: {_profile(c, v, o)}' for o in others)}.")
    return sentences


def _profile(c: Comparison, a: Checkpoint, b: Checkpoint) -> str:
    """'backbone 1.00, neck 0.62, head 0.31; first below 0.9 at model.12 C2f'."""
    cka = c.cka.get((a.label, b.label)) or c.cka[(b.label, a.label)]
    means = []
    for section in dict.fromkeys(la.section for la in c.layers):
        values = [
            cka[la.index] for la in c.layers if la.section == section and not math.isnan(cka.get(la.index, math.nan))
        ]
        if values:
            means.append(f"{section} {sum(values) / len(values):.2f}")
    first = next((la for la in c.layers if cka.get(la.index, math.inf) < DIVERGED), None)
    where = f"first below {DIVERGED} at {first.name}" if first else f"never below {DIVERGED}"
    return f"{', '.join(means)}; {where}"


def _span(indices: frozenset[int] | set[int], frozen: FrozenLayers) -> str:
    return ranges(spanned(frozenset(indices), frozen.weightless))
