"""When training times cannot be compared, say so next to them.

Two causes are visible in what a sweep records: variants that trained at the same time on one
device (parallel jobs share it, so each looks slower than it is), and CPU runs whose process got
far less CPU time than wall time (something else loaded the machine).
"""

from __future__ import annotations

import pandas as pd

from sweep.report.runs import tag
from sweep.tracking import names

MIN_OVERLAP = 0.1  # share of the shorter run's wall time two runs must overlap to count as parallel
MIN_CPU_PCT = 80.0  # mean CPU use of a CPU training below this (% of one core): starved, not computing


def timing_warnings(frame: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """One line per cause found; empty when the times compare fairly."""
    return [w for w in (_parallel(frame, table), _starved(table)) if w]


def _parallel(frame: pd.DataFrame, table: pd.DataFrame) -> str:
    runs = frame[frame["status"] == "FINISHED"].dropna(subset=["start_time", "end_time"])
    label = {run_id: row["label"] for row in table.to_dict("records") for run_id in row["run_ids"].split(",")}
    pairs = []
    for _, same_device in runs.groupby(runs.get(tag(names.DEVICE), pd.Series("?", index=runs.index)).fillna("?")):
        spans = same_device.sort_values("start_time")[["run_id", "start_time", "end_time"]].to_numpy()
        for i, (a, start_a, end_a) in enumerate(spans):
            for b, start_b, end_b in spans[i + 1 :]:
                shorter = min(end_a - start_a, end_b - start_b)
                if shorter > 0 and min(end_a, end_b) - max(start_a, start_b) > MIN_OVERLAP * shorter:
                    pairs.append(f"{label.get(a, a)} with {label.get(b, b)}")
    if not pairs:
        return ""
    shown = ", ".join(pairs[:3]) + (f" and {len(pairs) - 3} more pairs" if len(pairs) > 3 else "")
    return f"training times not comparable: variants trained at the same time on one device ({shown})."


def _starved(table: pd.DataFrame) -> str:
    cpu_only = table[table["gpu_mem_mb"].isna() & (table["status"] == "FINISHED")]
    low = cpu_only[cpu_only["cpu_util_pct"] < MIN_CPU_PCT]
    if low.empty:
        return ""
    shown = ", ".join(f"{r['label']} {r['cpu_util_pct']:.0f}%" for r in low.to_dict("records"))
    return (
        f"training times may be inflated: CPU time far below wall time (mean CPU use below {MIN_CPU_PCT:.0f}% of "
        f"one core: {shown}); something else loaded the machine."
    )
