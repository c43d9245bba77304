"""Which layers of a variant were frozen: as declared, and as found by comparing with the base.

Freezing by hand (an `on_train_start` callback setting `requires_grad=False`) leaves no trace in
the checkpoint (`freeze: None`), and leaves BatchNorm in train mode, so running statistics keep
moving. A layer whose parameters all equal the base's (FP16 tolerance) did not train: it is
reported as frozen whether or not anything declared it, and its BN statistics are checked too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.compare.checkpoints import DeclaredFreeze
from sweep.compare.weights import LayerChange


@dataclass(frozen=True)
class FrozenLayers:
    """The frozen layers of one variant: declared, found, and the set that is checked."""

    declared: DeclaredFreeze
    found: frozenset[int]  # layers with weights whose parameters all equal the base's
    used: frozenset[int]  # the override as given; else declared | found
    weightless: frozenset[int]  # layers with nothing to train (Concat, Upsample): neither frozen nor not

    @property
    def unverified(self) -> frozenset[int]:
        """Declared layers with weights that are not unchanged."""
        return self.declared.layers - self.found - self.weightless

    @property
    def undeclared(self) -> frozenset[int]:
        """Layers found unchanged that nothing declared frozen."""
        return self.found - self.declared.layers


def find_frozen(changes: list[LayerChange], declared: DeclaredFreeze) -> FrozenLayers:
    """Find unchanged layers in `changes` (variant vs base) and mark the checked set as frozen."""
    weightless = frozenset(ch.layer.index for ch in changes if ch.n_tensors == 0)
    found = frozenset(ch.layer.index for ch in changes if ch.n_tensors and not ch.new_tensors and not ch.moved)
    used = declared.layers if declared.override else declared.layers | found
    for ch in changes:
        ch.frozen = ch.layer.index in used and ch.n_tensors > 0
    return FrozenLayers(declared=declared, found=found, used=used - weightless, weightless=weightless)


def spanned(indices: frozenset[int], weightless: frozenset[int]) -> frozenset[int]:
    """`indices` plus the weightless layers lying between two of them, so that 'layers 0-21' reads
    as one range although Concat and Upsample layers inside it have nothing to freeze."""
    out = set(indices)
    ordered = sorted(indices)
    for i in weightless:
        if any(a < i for a in ordered) and any(b > i for b in ordered):
            below = max(a for a in ordered if a < i)
            above = min(b for b in ordered if b > i)
            if all(j in weightless for j in range(below + 1, above)):
                out.add(i)
    return frozenset(out)
