"""The sweep's parent run as its summary in MLflow, so the UI answers without building a chart.

- description (the `mlflow.note.content` tag, rendered as Markdown): the verdict and the table;
- params: what was swept and what was held fixed (only keys not set yet: MLflow params are
  immutable, so a later report never fails on a value an earlier one wrote);
- metrics `sweep/<figure>` with step = frozen layers, so MLflow's own charts draw accuracy and
  cost against the freeze level; the timestamp is the parent's start, so a refresh re-logs the
  same points instead of adding new ones;
- tags `sweep.recommended` (the row's label) and `sweep.recommended_runs`;
- on the variant runs: `mlflow.runColor`, the colour their row has in the report's plots (MLflow
  otherwise hashes run ids to colours, and two runs can get the same one), and the numeric
  `frozen_layers` / `trainable_pct` metrics at step 0 where an older run lacks them (the UI sorts
  by metrics; params sort as strings).
"""

from __future__ import annotations

import re

import pandas as pd
from matplotlib.colors import to_hex
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from sweep.report import plots
from sweep.report.runs import MAP50, MAP50_95, metric, param
from sweep.report.table import FINISHED
from sweep.report.verdict import Verdict
from sweep.tracking import names
from sweep.tracking.sweeps import SweepRef

NOTE = "mlflow.note.content"
RUN_COLOR = "mlflow.runColor"
RECOMMENDED = "sweep.recommended"
RECOMMENDED_RUNS = "sweep.recommended_runs"
PARENT_COLOR = "#444444"
MAX_NOTE = 8000  # MLflow's longest tag value
# Parent metric (under sweep/) -> table column; one point per finished row, step = its frozen layers.
FIGURES = {
    f"best_{MAP50}": MAP50,
    f"best_{MAP50_95}": MAP50_95,
    "train_time_s": "train_time_s",
    "gpu_mem_mb": "gpu_mem_mb",
    "trainable_pct": "trainable_pct",
}
SORT_METRICS = (names.P_FROZEN_LAYERS, names.P_TRAINABLE_PCT)


def summarize_parent(
    client: MlflowClient,
    sweep: SweepRef,
    frame: pd.DataFrame,
    table: pd.DataFrame,
    verdict: Verdict,
    params: dict[str, str],
    description: str,
) -> list[str]:
    """Write the summary; returns warnings (params kept from an earlier report), never raises on them."""
    parent = client.get_run(sweep.parent_run_id)
    timestamp = parent.info.start_time or 0
    existing = parent.data.params
    new = {k: v[:6000] for k, v in params.items() if k not in existing}
    warnings = [
        f"parent run {sweep.parent_run_id}: param {k} kept at {existing[k]!r} (now {v!r}; MLflow params cannot change)"
        for k, v in params.items()
        if k in existing and existing[k] != v[:6000]
    ]
    tags = {NOTE: _fit(description), RUN_COLOR: PARENT_COLOR}
    if verdict.recommended is not None:
        row = table.loc[verdict.recommended]
        tags.update({RECOMMENDED: row["label"], RECOMMENDED_RUNS: row["run_ids"]})
    client.log_batch(
        sweep.parent_run_id,
        metrics=parent_metrics(table, timestamp),
        params=[Param(k, v) for k, v in new.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    _mark_variants(client, frame, table, timestamp)
    return warnings


def parent_metrics(table: pd.DataFrame, timestamp: int) -> list[Metric]:
    """`sweep/<figure>` per finished row at step = frozen layers; one series per model/setting block."""
    done = table[table["status"] == FINISHED]
    several = done[["model", "config"]].drop_duplicates().shape[0] > 1
    found = []
    for row in done.to_dict("records"):
        block = f"{row['model']} {row['config']}".strip() if several else ""
        for name, column in FIGURES.items():
            if pd.notna(row[column]):
                key = metric_key(name, block)
                found.append(Metric(key, float(row[column]), timestamp, int(row["frozen_layers"])))
    return found


def metric_key(name: str, block: str = "") -> str:
    """`sweep/<name>`, or `sweep/<block>/<name>` in a sweep over several models or settings."""
    block = re.sub(r"[^\w.\- /:]", "_", block)
    return f"sweep/{block}/{name}" if block else f"sweep/{name}"


def _mark_variants(client: MlflowClient, frame: pd.DataFrame, table: pd.DataFrame, timestamp: int) -> None:
    colors = [to_hex(c) for c in plots.row_colors(len(table))]
    color_of = {run_id: colors[i] for i, ids in enumerate(table["run_ids"]) for run_id in ids.split(",")}
    for record in frame.to_dict("records"):
        run_id = record["run_id"]
        sort_metrics = [
            Metric(name, float(record[param(name)]), timestamp, 0)
            for name in SORT_METRICS
            if pd.isna(record.get(metric(name))) and pd.notna(pd.to_numeric(record.get(param(name)), errors="coerce"))
        ]
        client.log_batch(run_id, metrics=sort_metrics, tags=[RunTag(RUN_COLOR, color_of[run_id])])


def _fit(description: str) -> str:
    if len(description) <= MAX_NOTE:
        return description
    cut = "\n\n(cut to fit MLflow's description limit: the whole report is in the artifacts under report/)"
    return description[: MAX_NOTE - len(cut)] + cut
