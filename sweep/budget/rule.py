"""Who survives a rung of a budgeted sweep: compare at equal cost, keep what could still win.

Successive halving (Hyperband, ASHA, W&B's `early_terminate`, Optuna's pruners) trains every
variant a little, keeps the best 1/eta, trains those eta times longer, and so on. Its usual form
is wrong for freezing in two ways:

1. **It compares at equal epochs.** A frozen variant's epoch costs less than an unfrozen one's,
   and the budget is training time, not epochs. So variants are compared at equal training
   seconds: the accuracy each had reached after the same seconds of training on its device.
2. **Learning curves cross.** Frozen variants learn fast early and level off; full fine-tuning
   starts slower and overtakes later (the YOLOv5 tutorial: freezing "speeds up training, but
   reduces final accuracy slightly"). Ranked at one moment, the late winner is dropped. So a
   variant whose recent slope, extended to the next rung's cost, would pass the leader's (extended
   the same way) is kept for another rung.
3. **A slope seen early does not show a late crossing.** On the demo at 16 epochs, the schedules
   that unfreeze everything lead only from about 20 s of training on; at 2.5 s and 7 s they are
   behind and no steeper than the frozen levels, so the first two rules dropped the winner in
   9 of 9 replays (bench/bench_budget.py). What freezing does tell in advance is its order: a variant
   that trains more of the network may still overtake one that trains less, never the other way
   round once it is behind. So a variant is stopped only when a kept one that will freeze fewer
   layers than it in the end is ahead of it (a schedule's last stage counts; freeze=auto, which
   only freezes more, counts as its prefix so far when behind and as its `max` when ahead). This
   keeps the late learners to the end and stops the frozen levels that lose at their own game:
   correct verdicts first, saving second.
4. **Variants that end training the same layers are not ordered by freezing.** Two fixed levels
   that freeze the same layers differ in something else (lr0, say), and the one behind is halved as
   usual. But where one of the two switches (a schedule, freeze=auto), a lead is a leftover of their
   different first stages, and it washes out: at 64 epochs `all_but_head -> none @2` led
   `backbone -> none @2` by 0.01-0.04 from the first rung to 40 s, and the latter ended 0.006
   ahead; stopping on that lead gave another verdict than the full grid in 7 of 9 replays.

The rule at rung k, whose allotment is A seconds of training (each variant trained until its
cumulative `epoch_time_s` first reached A, then paused), when some variant trained on since rung
k-1 (`new_evidence`; a rung with nothing new keeps every variant and decides nothing):

- a variant's curve is its best mAP50-95 so far against its cumulative training seconds, linear
  between epoch ends and from (0, 0), cut at the first epoch that reached A (a re-run, whose
  variants may have trained further, sees what the first run saw and decides the same);
- all are compared at c, the least training time any unfinished variant reached (>= A, since
  each reached A); a variant that completed its epochs before c keeps its final value;
- replicates (variants that differ only in `train.seed`) are one candidate, scored by their mean,
  as the report's table makes them one row: a seed is not a choice to keep or drop;
- kept: the best ceil(n / eta) candidates; every candidate within `tolerance` of the last of
  them (differences the verdict would not act on); and every unfinished candidate whose value at
  c plus its recent slope (least squares over its last SLOPE_EPOCHS epochs, mAP50-95 per training
  second, never below 0; after one epoch, its average rate since the start) times (eta·A - c)
  exceeds the leader's, projected the same way;
- and every unfinished candidate that no kept candidate ahead of it by `tolerance` outdoes in what
  it trains in the end: fewer frozen layers, or as few where neither of the two switches
  (candidates whose frozen layers are unknown are left to the rules above).

The projection is linear while real curves bend down, so it favours steep (late) learners; that
is the intent: keeping a late winner one rung too long costs one rung of one variant, dropping it
costs the answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from sweep.tracking import names

SLOPE_EPOCHS = 3  # epochs the recent slope is fitted over: fewer follow validation noise


@dataclass(frozen=True)
class Curve:
    """One variant's record so far: cumulative training seconds and mAP50-95 at each epoch end."""

    costs: tuple[float, ...] = ()
    scores: tuple[float, ...] = ()
    complete: bool = False  # trained all its epochs (or early stopping ended it): nothing more to gain
    final_frozen: int | None = None  # the fewest layers it will have frozen from now on (`frozen_range`); None: unknown
    most_frozen: int | None = None  # the most it may freeze in the end (freeze=auto's max); None: final_frozen
    switches: bool = False  # its frozen layers change while it trains (a schedule, freeze=auto)

    @classmethod
    def from_epochs(
        cls,
        epoch_times: Sequence[float],
        scores: Sequence[float],
        complete: bool = False,
        frozen: tuple[int | None, int | None] = (None, None),
        switches: bool = False,
    ) -> Curve:
        costs, total = [], 0.0
        for seconds in epoch_times:
            total += float(seconds)
            costs.append(total)
        return cls(tuple(costs), tuple(float(s) for s in scores), complete, *frozen, switches)

    @property
    def spent_s(self) -> float:
        return self.costs[-1] if self.costs else 0.0

    def cut(self, allotment_s: float) -> Curve:
        """The curve as it stood when the variant first reached `allotment_s` (all of it if never)."""
        reached = next((i for i, cost in enumerate(self.costs) if cost >= allotment_s), None)
        if reached is None:
            return self
        end = reached + 1
        complete = self.complete and end == len(self.costs)
        return replace(self, costs=self.costs[:end], scores=self.scores[:end], complete=complete)

    def value_at(self, cost_s: float) -> float:
        """Best mAP50-95 reached within `cost_s` seconds of training, linear between epoch ends."""
        if not self.costs:
            return 0.0
        best, previous_cost, previous_best = 0.0, 0.0, 0.0
        for cost, score in zip(self.costs, self.scores, strict=True):
            best = max(best, score)
            if cost >= cost_s:
                share = (cost_s - previous_cost) / (cost - previous_cost) if cost > previous_cost else 1.0
                return previous_best + share * (best - previous_best)
            previous_cost, previous_best = cost, best
        return best

    def slope(self) -> float:
        """mAP50-95 gained per training second lately (least squares over the last epochs), >= 0;
        after a single epoch, its average rate since the start (too few points to fit a line)."""
        if self.complete or not self.costs:
            return 0.0
        if len(self.costs) == 1:
            return max(0.0, self.scores[0] / self.costs[0]) if self.costs[0] > 0 else 0.0
        xs, ys = self.costs[-SLOPE_EPOCHS:], self.scores[-SLOPE_EPOCHS:]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        if spread <= 0:
            return 0.0
        return max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread)


@dataclass(frozen=True)
class Decision:
    """What the rule decided at one rung, and the figures it decided on (budget.json keeps them)."""

    rung: int
    allotment_s: float
    compared_at_s: float
    values: dict[str, float]  # candidate -> mean best mAP50-95 at compared_at_s
    projected: dict[str, float]  # candidate -> value projected to the next rung's cost
    kept: tuple[str, ...]  # best first; a kept candidate that completed its epochs has nothing left to train
    stopped: dict[str, str] = field(default_factory=dict)  # candidate -> why, one line
    kept_for_slope: tuple[str, ...] = ()
    kept_for_capacity: tuple[str, ...] = ()  # behind, but no kept one ahead of it trains more

    def as_record(self) -> dict:
        return {
            "rung": self.rung,
            "allotment_s": round(self.allotment_s, 3),
            "compared_at_s": round(self.compared_at_s, 3),
            "values": {k: round(v, 5) for k, v in self.values.items()},
            "projected": {k: round(v, 5) for k, v in self.projected.items()},
            "kept": list(self.kept),
            "kept_for_slope": list(self.kept_for_slope),
            "kept_for_capacity": list(self.kept_for_capacity),
            "stopped": dict(self.stopped),
        }


def allotment(budget_s: float, eta: float, rung: int) -> float:
    """Training seconds a variant has had by the end of rung `rung` (1-based): budget·eta^(k-1)."""
    return budget_s * eta ** (rung - 1)


def new_evidence(candidates: Mapping[str, Sequence[Curve]], previous_s: float, allotment_s: float) -> bool:
    """Whether a rung shows anything the rung before it did not: an epoch that ended between the two
    allotments, or (every curve complete) final values. With a budget below an epoch's time, rungs
    pass in which no variant trained on; deciding again there would cut the field once per rung on
    the same first epochs, which is equal-epoch halving, the rule this module exists to avoid."""
    now = [(curve.cut(allotment_s), curve.cut(previous_s)) for curves in candidates.values() for curve in curves]
    return all(cut.complete for cut, _ in now) or any(len(cut.costs) > len(before.costs) for cut, before in now)


def decide(
    candidates: Mapping[str, Sequence[Curve]], rung: int, allotment_s: float, eta: float, tolerance: float
) -> Decision:
    """Who of `candidates` (name -> its replicates' curves) trains on after rung `rung`."""
    cut = {name: [curve.cut(allotment_s) for curve in curves] for name, curves in candidates.items()}
    every = [curve for curves in cut.values() for curve in curves]
    reached = [curve.spent_s for curve in every if curve.costs and not curve.complete]
    at = min(reached) if reached else max((curve.spent_s for curve in every), default=0.0)
    values = {name: _mean([c.value_at(at) for c in curves]) for name, curves in cut.items()}
    ranked = sorted(values, key=lambda name: -values[name])
    if not ranked:
        return Decision(rung, allotment_s, at, {}, {}, ())
    quota = math.ceil(len(ranked) / eta)
    bar = values[ranked[quota - 1]] - tolerance - 1e-12
    kept = [name for name in ranked if values[name] >= bar]
    ahead = max(0.0, allotment_s * eta - at)
    projected = {name: values[name] + ahead * _mean([c.slope() for c in cut[name]]) for name in ranked}
    leader = projected[ranked[0]]
    unfinished = {name for name, curves in cut.items() if not all(c.complete for c in curves)}
    for_slope = [name for name in ranked if name not in kept and name in unfinished and projected[name] > leader]
    frozen = {name: _least_frozen(curves) for name, curves in cut.items()}
    most = {name: _most_frozen(curves) for name, curves in cut.items()}
    switching = {name for name, curves in cut.items() if any(c.switches for c in curves)}
    keep, for_capacity, ahead_of = [*kept, *for_slope], [], {}
    for name in ranked:  # best first: a candidate kept for capacity can put the ones behind it out
        if name in keep or name not in unfinished or frozen[name] is None:
            continue
        ahead_of[name] = _ahead_training_as_much(name, keep, values, (frozen, most), switching, tolerance)
        if ahead_of[name] is None:
            keep.append(name)
            for_capacity.append(name)
    stopped = {
        name: (
            f"rung {rung}: mAP50-95 {values[name]:.3f} after {at:.1f} s of training, below the {quota} kept "
            f"(the last {values[ranked[quota - 1]]:.3f}, tolerance {tolerance:.3f}); its recent slope projects "
            f"{projected[name]:.3f} at {allotment_s * eta:.1f} s, not above the leader's {leader:.3f}"
            + (
                ""
                if ahead_of.get(name) is None
                else f"; {ahead_of[name]} is ahead and freezes no more layers than it in the end"
            )
        )
        for name in ranked
        if name in unfinished and name not in keep
    }
    kept_all = tuple(name for name in ranked if name in keep)
    return Decision(rung, allotment_s, at, values, projected, kept_all, stopped, tuple(for_slope), tuple(for_capacity))


def _least_frozen(curves: Sequence[Curve]) -> int | None:
    """The fewest layers a candidate will have frozen from now on (over its replicates); None if unknown."""
    known = [c.final_frozen for c in curves if c.final_frozen is not None]
    return min(known) if known and len(known) == len(curves) else None


def _most_frozen(curves: Sequence[Curve]) -> int | None:
    """The most layers a candidate may freeze in the end (over its replicates); None if unknown."""
    known = [c.final_frozen if c.most_frozen is None else c.most_frozen for c in curves]
    return None if any(k is None for k in known) or not known else max(known)


def _ahead_training_as_much(
    name: str,
    kept: Sequence[str],
    values: Mapping[str, float],
    frozen: tuple[Mapping[str, int | None], Mapping[str, int | None]],
    switching: set[str],
    tolerance: float,
) -> str | None:
    """A kept candidate ahead of `name` by `tolerance` or more that `name` may not overtake: one that,
    whatever it still decides, freezes fewer layers than `name` will in the end; or as few, when
    neither switches (two fixed levels that differ in something else). Between a schedule (or auto)
    and a variant that ends training the same layers, a lead is a leftover of their different
    first stages, which washes out: it orders nothing."""
    least, most = frozen
    for other in kept:
        if most[other] is None or least[name] is None or values[other] - values[name] < tolerance:
            continue
        if most[other] < least[name] or (most[other] == least[name] and not {name, other} & switching):
            return other
    return None


def frozen_range(params: Mapping[str, str], metrics: Mapping[str, float]) -> tuple[int | None, int | None]:
    """From a variant's run: the fewest layers it will have frozen from now on, and the most it may
    freeze in the end. A schedule's last stage (`freeze_schedule`, also what freeze=auto logs when
    it ends); freeze=auto while training: its prefix so far (it only freezes more) up to its `max`;
    a fixed level: its `frozen_layers`. None where the run does not say."""
    schedule = params.get(names.P_FREEZE_SCHEDULE)
    if schedule:
        try:
            last = len(json.loads(schedule)[-1][1])
        except (ValueError, IndexError, TypeError):
            return None, None
        return last, last
    now = _count(metrics.get(names.M_FROZEN_LAYERS), params.get(names.P_FROZEN_LAYERS))
    auto = params.get(names.P_FREEZE_AUTO)
    if auto:
        try:
            return now, int(json.loads(auto)["max"])
        except (ValueError, KeyError, TypeError):
            return now, None
    return now, now


def switches(params: Mapping[str, str]) -> bool:
    """Whether a variant's frozen layers change while it trains: a schedule, or freeze=auto."""
    return bool(params.get(names.P_FREEZE_SCHEDULE) or params.get(names.P_FREEZE_AUTO))


def _count(*values: object) -> int | None:
    for value in values:
        try:
            return int(float(value))
        except (TypeError, ValueError):
            continue
    return None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
