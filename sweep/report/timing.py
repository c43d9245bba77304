"""When training times cannot be compared, say so next to them.

Four causes are visible in what a sweep records: variants that trained at the same time on one
device (parallel jobs share it, so each looks slower than it is; a run resumed in a later process,
as a budget's rungs resume every variant, trained only during its epochs, not from its first start
to its last end), CPU runs whose process got
far less CPU time than wall time (something else loaded the machine), variants that trained
under different machine load (`sweep.tracking.machine_load`: what one variant lost to other
processes, another did not), and variants whose training mostly waited for batches, which then
time the data loader.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from mlflow.tracking import MlflowClient

from sweep.report.runs import metric, tag
from sweep.tracking import names

Spans = Mapping[str, list[tuple[float, float]]]  # run id -> when it trained, (start, end) in ms, in order

MIN_OVERLAP = 0.1  # share of the shorter run's wall time two runs must overlap to count as parallel
MIN_CPU_PCT = 80.0  # mean CPU use of a CPU training below this (% of one core): starved, not computing
MAX_SHARE_RATIO = 1.3  # one CPU variant's threads got this much more CPU than another's: unequal conditions
LOAD_COLUMNS = ["cpu_share_pct", "load_per_core"]
MAX_LOAD_GAP = 0.5  # 1-minute load average per core between variants: unequal conditions
MAX_DATA_WAIT_PCT = 50.0  # share of the last epoch's training spent waiting for batches: the loader sets the pace


def timing_warnings(frame: pd.DataFrame, table: pd.DataFrame, spans: Spans | None = None) -> list[str]:
    """One line per cause found; empty when the times compare fairly. `spans`: when resumed runs
    trained (`training_spans`); any other run trained from its start to its end."""
    causes = (_parallel(frame, table, spans or {}), _starved(table), _uneven_load(table), _input_bound(frame, table))
    return [w for w in causes if w]


def training_spans(client: MlflowClient, frame: pd.DataFrame) -> dict[str, list[tuple[float, float]]]:
    """When each resumed run trained: its epochs, each ending when its `epoch_time_s` was logged and
    lasting that long, joined where they touch. A resumed run's start and end times span the pauses
    between its processes (a budget's rungs, in which other variants trained on the same device)."""
    resumed_after = frame.get(tag(names.RESUMED_AFTER), pd.Series(None, index=frame.index))
    resumed = frame[resumed_after.notna() & (frame["status"] == "FINISHED")]  # those `_parallel` compares
    spans = {}
    for run_id in resumed["run_id"]:
        epochs = sorted(
            (m.timestamp - 1000 * m.value, m.timestamp) for m in client.get_metric_history(run_id, names.EPOCH_TIME)
        )
        joined: list[tuple[float, float]] = []
        for start, end in epochs:
            if joined and start <= joined[-1][1]:
                joined[-1] = (joined[-1][0], max(joined[-1][1], end))
            else:
                joined.append((start, end))
        if joined:
            spans[run_id] = joined
    return spans


def _parallel(frame: pd.DataFrame, table: pd.DataFrame, spans: Spans) -> str:
    runs = frame[frame["status"] == "FINISHED"].dropna(subset=["start_time", "end_time"])
    label = {run_id: row["label"] for row in table.to_dict("records") for run_id in row["run_ids"].split(",")}
    pairs = []
    for _, same_device in runs.groupby(runs.get(tag(names.DEVICE), pd.Series("?", index=runs.index)).fillna("?")):
        ordered = same_device.sort_values("start_time")[["run_id", "start_time", "end_time"]].to_numpy()
        trained = [(run_id, spans.get(run_id) or [(start, end)]) for run_id, start, end in ordered]
        for i, (a, spans_a) in enumerate(trained):
            for b, spans_b in trained[i + 1 :]:
                shorter = min(_length(spans_a), _length(spans_b))
                if shorter > 0 and _overlap(spans_a, spans_b) > MIN_OVERLAP * shorter:
                    pairs.append(f"{label.get(a, a)} with {label.get(b, b)}")
    if not pairs:
        return ""
    shown = ", ".join(pairs[:3]) + (f" and {len(pairs) - 3} more pairs" if len(pairs) > 3 else "")
    return f"training times not comparable: variants trained at the same time on one device ({shown})."


def _length(spans: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in spans)


def _overlap(spans_a: list[tuple[float, float]], spans_b: list[tuple[float, float]]) -> float:
    """How long two runs trained at the same time."""
    return sum(
        max(0.0, min(end_a, end_b) - max(start_a, start_b)) for start_a, end_a in spans_a for start_b, end_b in spans_b
    )


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


def _uneven_load(table: pd.DataFrame) -> str:
    """Variants whose mean machine load differs: CPU share of the training's threads (CPU runs only:
    on a GPU, freezing itself changes how much CPU a training uses) or load average per core."""
    done = table[table["status"] == "FINISHED"]
    done = done.assign(**{c: done.get(c, float("nan")) for c in LOAD_COLUMNS})  # absent: not recorded
    cpu = done[done["gpu_mem_mb"].isna()].dropna(subset=["cpu_share_pct"])
    load = done.dropna(subset=["load_per_core"])
    uneven_share = len(cpu) > 1 and cpu["cpu_share_pct"].max() > MAX_SHARE_RATIO * cpu["cpu_share_pct"].min()
    uneven_load = len(load) > 1 and load["load_per_core"].max() - load["load_per_core"].min() > MAX_LOAD_GAP
    if not (uneven_share or uneven_load):
        return ""
    shown = "; ".join(_load_of(r) for r in load.to_dict("records"))
    return (
        "training times not comparable: the variants trained under different machine load "
        f"({shown}); the speed-ups measure that load as much as the freezing. Re-run on an idle machine."
    )


def _load_of(row: dict) -> str:
    share = "" if pd.isna(row["cpu_share_pct"]) else f"CPU share {row['cpu_share_pct']:.0f}%, "
    return f"{row['label']} {share}load {row['load_per_core']:.2f}/core"


def _input_bound(frame: pd.DataFrame, table: pd.DataFrame) -> str:
    """Variants whose last epoch (the steady state: `data_wait_pct`'s latest value) waited for
    batches most of its training: their times are the loader's, so freezing cannot show its gain."""
    if metric(names.DATA_WAIT) not in frame:
        return ""
    waits = frame.set_index("run_id")[metric(names.DATA_WAIT)]
    bound = []
    for row in table[table["status"] == "FINISHED"].to_dict("records"):
        wait = waits.reindex(row["run_ids"].split(",")).dropna()
        if len(wait) and wait.mean() > MAX_DATA_WAIT_PCT:
            bound.append(f"{row['label']} {wait.mean():.0f}%")
    if not bound:
        return ""
    return (
        f"training times measure data loading, not the model: these variants spent most of their last epoch's "
        f"training waiting for batches (data_wait_pct: {', '.join(bound)}), which freezing does not shorten. "
        "What helps: train.cache=ram (decode once), more train.workers (on a GPU: on CPU ultralytics loads in the "
        "training process), a smaller train.imgsz."
    )
