"""The answer to "how much should I freeze?": a recommended row, the Pareto front, and why.

The recommendation is the cheapest finished row (training time first, then GPU memory where every
finished row measured it) whose best mAP50-95 is within a tolerance of the best row's. The
tolerance is what the user gave, else the largest replicate spread (std of mAP50-95) when rows have
replicates, else one point (0.01): a difference smaller than the noise between seeds is no reason
to pay more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from sweep.errors import ConfigError
from sweep.report.runs import MAP50_95
from sweep.report.table import FINISHED, time_unit

DEFAULT_TOLERANCE = 0.01  # one point of mAP50-95


@dataclass(frozen=True)
class Verdict:
    recommended: int | None  # table position (label order), None when no row finished
    best: int | None
    tolerance: float
    tolerance_reason: str  # "given", "one point", "replicate spread"
    pareto: list[int] = field(default_factory=list)  # table positions, cheapest first
    costs: tuple[str, ...] = ()  # the cost columns the front and the choice used
    sentence: str = ""


def check_tolerance(value: float | None) -> float | None:
    """A tolerance is a difference of mAP50-95, a fraction in [0, 1): 0.01 is one point."""
    if value is not None and not (0 <= value < 1 and math.isfinite(value)):
        raise ConfigError(f"--tolerance {value}: give a difference of mAP50-95 in [0, 1), e.g. 0.01 for one point")
    return value


def decide(table: pd.DataFrame, tolerance: float | None = None) -> Verdict:
    """Recommend a row of `table` (as `table.summarize` returns it)."""
    check_tolerance(tolerance)
    done = table[(table["status"] == FINISHED) & table[MAP50_95].notna() & table["train_time_s"].notna()]
    tolerance, reason = _tolerance(done, tolerance)
    if done.empty:
        return Verdict(None, None, tolerance, reason, sentence="No recommendation yet: no variant finished.")
    costs = ("train_time_s", "gpu_mem_mb") if done["gpu_mem_mb"].notna().all() else ("train_time_s",)
    best = int(done[MAP50_95].idxmax())
    good = done[done[MAP50_95] >= done.at[best, MAP50_95] - tolerance - 1e-12]
    chosen = int(good.sort_values([*costs, MAP50_95], ascending=[*[True] * len(costs), False]).index[0])
    front = pareto_front(done, costs)
    return Verdict(chosen, best, tolerance, reason, front, costs, _sentence(table, chosen, best, tolerance, reason))


def pareto_front(done: pd.DataFrame, costs: tuple[str, ...]) -> list[int]:
    """Rows no other row beats on accuracy and every cost at once (ties kept), cheapest first."""
    values = done[[MAP50_95, *costs]].to_numpy(float)
    front = []
    for i, row in enumerate(values):
        no_worse = (values[:, 0] >= row[0]) & (values[:, 1:] <= row[1:]).all(axis=1)
        better = (values[:, 0] > row[0]) | (values[:, 1:] < row[1:]).any(axis=1)
        if not (no_worse & better).any():
            front.append(int(done.index[i]))
    return sorted(front, key=lambda i: tuple(done.loc[i, list(costs)]))


def _tolerance(done: pd.DataFrame, given: float | None) -> tuple[float, str]:
    if given is not None:
        return given, "given"
    spread = done.loc[done["n"] > 1, f"{MAP50_95}_std"].dropna()
    if not spread.empty:
        return float(spread.max()), "replicate spread"
    return DEFAULT_TOLERANCE, "one point"


def _sentence(table: pd.DataFrame, chosen: int, best: int, tolerance: float, reason: str) -> str:
    row, top = table.loc[chosen], table.loc[best]
    what = f"{row['label']} ({row['frozen_layers']:.0f} layers frozen, {row['trainable_pct']:.1f}% of parameters trainable)"
    if chosen == best:
        return (
            f"{what}: it has the best {MAP50_95}, {top[MAP50_95]:.3f}, and no variant within {tolerance:.3f} "
            f"({reason}) of it trains faster."
        )
    unit, scale = time_unit(top["train_time_s"])
    text = (
        f"{what}: its {MAP50_95} {row[MAP50_95]:.3f} is within {tolerance:.3f} ({reason}) of the best, "
        f"{top[MAP50_95]:.3f} ({top['label']}), and it trains in {row['train_time_s'] / scale:.1f} {unit} instead of "
        f"{top['train_time_s'] / scale:.1f} {unit} ({top['train_time_s'] / row['train_time_s']:.1f}x faster)"
    )
    if not (math.isnan(row["gpu_mem_mb"]) or math.isnan(top["gpu_mem_mb"])):
        saved = 100 * (1 - row["gpu_mem_mb"] / top["gpu_mem_mb"])
        text += f", with {abs(saved):.0f}% {'less' if saved >= 0 else 'more'} GPU memory"
    return text + "."
