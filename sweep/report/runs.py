"""Find sweeps in MLflow and load their variant runs into a DataFrame, one row per run.

Runs are found only through the names in `sweep.tracking.names`. One `search_runs` per sweep
returns every variant with its params, tags and latest metrics; that is all the table needs,
because the figures it reports (`best/*`, `train_time_s`, the resource summaries) are each
logged once. Metric histories are fetched only for the series the plots draw.

Columns follow `mlflow.search_runs`: `run_id`, `status`, ..., `params.<name>`,
`metrics.<name>`, `tags.<name>`; build them with `param()`, `metric()` and `tag()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweep.errors import ConfigError
from sweep.tracking import names
from sweep.tracking.sweeps import SweepRef, variant_runs

STOPPED = "STOPPED"  # the report's status of a variant a budget stopped (FINISHED in MLflow)
MAX_POINTS = 10**9  # a bulk history read's row limit: no limit
RUN_TAGS = (names.ERROR, names.DEVICE, names.CONFIG_HASH, names.SWEEP_ID, names.STOPPED_AT_RUNG, names.RESUMED_AFTER)

# Latest values the table reads; absent ones (GPU figures of a CPU run) become NaN columns.
SUMMARY_METRICS = (
    *names.BEST.values(),
    names.TRAIN_TIME,
    names.GPU_PEAK_ALLOCATED,
    names.GPU_PEAK_RESERVED,
    names.GPU_UTIL_MEAN,
    names.CPU_PEAK_RSS,
    names.CPU_UTIL_MEAN,
)
MAP50, MAP50_95 = names.EPOCH_METRICS[:2]
EPOCH_SERIES = (MAP50, MAP50_95, names.EPOCH_TIME, names.CPU_SHARE, names.LOAD_PER_CORE)  # step = epoch
GPU_SERIES = (names.GPU_MEMORY, names.GPU_UTIL)  # step = seconds since training start
CPU_SERIES = (names.CPU_RSS, names.CPU_UTIL)  # drawn for runs without GPU series
RESOURCE_SERIES = (*GPU_SERIES, *CPU_SERIES)

History = dict[str, dict[str, pd.Series]]  # run id -> metric name -> values indexed by step


def param(name: str) -> str:
    return f"params.{name}"


def metric(name: str) -> str:
    return f"metrics.{name}"


def tag(name: str) -> str:
    return f"tags.{name}"


def load_runs(client: MlflowClient, sweeps: Sequence[SweepRef]) -> pd.DataFrame:
    """Every variant run of the sweeps, once each (a run shared by two sweeps is one replicate)."""
    records = []
    for sweep in sweeps:
        runs = variant_runs(client, sweep)
        if not runs:
            raise ConfigError(
                f"sweep {sweep.sweep_id}: no variant runs (parent run {sweep.parent_run_id}); "
                "its jobs have not started or all failed before training"
            )
        records += [run_record(run, sweep) for run in runs]
    frame = pd.DataFrame.from_records(records).drop_duplicates("run_id", ignore_index=True)
    missing = [metric(m) for m in SUMMARY_METRICS if metric(m) not in frame]
    return frame.assign(**dict.fromkeys(missing, math.nan))


def run_record(run: Run, sweep: SweepRef) -> dict:
    info, data = run.info, run.data
    record = {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "status": run_status(run),  # STOPPED for a variant a budget stopped
        "start_time": info.start_time,
        "end_time": info.end_time,
        "sweep": sweep.sweep_id,
        "parent_run_id": sweep.parent_run_id,
    }
    record.update({tag(k): data.tags[k] for k in RUN_TAGS if k in data.tags})
    record.update({param(k): v for k, v in data.params.items()})
    record.update({metric(k): v for k, v in data.metrics.items()})
    return record


def run_status(run: Run) -> str:
    """MLflow's status, STOPPED for a variant a budget stopped."""
    return STOPPED if names.STOPPED_AT_RUNG in run.data.tags else run.info.status


def history_plan(frame: pd.DataFrame, keys: Sequence[str]) -> dict[str, list[str]]:
    """Metric -> the runs that logged it (their latest metrics say so); CPU series only where no GPU series."""
    plan: dict[str, list[str]] = {}
    columns = ["run_id", *(metric(key) for key in keys if metric(key) in frame)]  # not every column: 5x faster
    for record in frame[columns].to_dict("records"):
        has = [key for key in keys if _present(record.get(metric(key)))]
        if set(has) & set(GPU_SERIES):
            has = [key for key in has if key not in CPU_SERIES]
        for key in has:
            plan.setdefault(key, []).append(record["run_id"])
    return plan


def load_histories(
    client: MlflowClient, frame: pd.DataFrame, keys: Sequence[str], into: History | None = None
) -> History:
    """Series of the runs in `frame`: one query per metric with a SQL store, else one call per run and metric."""
    histories: History = {} if into is None else into
    bulk = _bulk_history(client)
    for key, run_ids in history_plan(frame, keys).items():
        if bulk:
            rows = [(m.run_id, m.step, m.value) for ids in _chunks(run_ids) for m in bulk(ids, key, MAX_POINTS)]
        else:
            rows = [(run_id, m.step, m.value) for run_id in run_ids for m in client.get_metric_history(run_id, key)]
        points = pd.DataFrame.from_records(rows, columns=["run_id", "step", "value"])
        for run_id, run_points in points.groupby("run_id", sort=False):
            series = pd.Series(run_points["value"].to_numpy(float), index=run_points["step"].to_numpy(), name=key)
            histories.setdefault(run_id, {})[key] = series.sort_index(kind="stable")
    return histories


def _bulk_history(client: MlflowClient) -> Callable | None:
    """MLflow's SQL store reads one metric of many runs in one query (its UI server uses it), but no
    public client call exposes that. Per-run calls cost a query each, and SQLite answers each by
    scanning every row of that metric in the store: 25 ms a call on a store of 1,000 runs.
    """
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return getattr(store, "get_metric_history_bulk", None)


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    """SQLite caps the parameters of one query (999 before 3.32)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
