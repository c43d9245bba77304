"""The sweep's parent run as its summary in MLflow, and its variants as the runs table shows them.

Every report of one sweep writes these (at the sweep's end, and `freeze-sweep-report` at any time,
also while the sweep runs), so all of it can be written again: tags and metrics, never params (the
sweep writes its params once, at its start: `sweep.report.context.parent_params`).

On the parent:
- description (the `mlflow.note.content` tag, rendered as Markdown; MLflow shows its first 100 px
  above "Show more"): the pick in one line, a short table of every variant, how to read the parent's
  charts, then the whole report;
- summary metrics at step 0, stamped now, so the latest is this report's: `sweep/best_mAP50-95`
  (the best row's, as the verdict says) and `sweep/recommended_<figure>` (the recommended row's),
  at 4 significant digits (the Metrics box prints every digit; report.csv keeps them);
- per-level series `by_frozen_layers/<figure>`, step = frozen layers, so MLflow's own charts draw
  accuracy and cost against the freeze level (their x-axis says "Step": the name and the
  description say what it is); the timestamp is the parent's start, so a refresh re-logs the same
  points instead of adding new ones;
- tags `sweep.recommended` (the row's label) and `sweep.recommended_runs`.

On the variant runs:
- the run name, with the settings this sweep holds at a value another sweep of the experiment does
  not (`backbone 10/23 · yolov8n-demo · epochs 3`), so sweeps side by side tell themselves apart; the
  name the variant started with is kept in the tag `sweep.base_name`;
- `mlflow.runColor`, the colour their row has in the report's plots (MLflow otherwise hashes run
  ids to colours, and two runs can get the same one);
- the numeric `frozen_layers` / `trainable_pct` metrics at step 0 where an older run lacks them
  (the UI sorts by metrics; params sort as strings);
- what the runs table shows (`names.VIEW_*` tags, the report's rounded text) and the exact
  figures against the unfrozen variant (`names.DELTA_VS_UNFROZEN`, `names.SPEEDUP_VS_UNFROZEN`).
"""

from __future__ import annotations

import re
import time

import pandas as pd
from matplotlib.colors import to_hex
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from sweep.report import plots
from sweep.report.context import HEADLINE
from sweep.report.runs import MAP50, MAP50_95, metric, param, tag
from sweep.report.table import FINISHED, NA, display, to_markdown
from sweep.report.verdict import Verdict
from sweep.tracking import names
from sweep.tracking.sweeps import SweepRef

NOTE = "mlflow.note.content"
RUN_COLOR = "mlflow.runColor"
RECOMMENDED = "sweep.recommended"
RECOMMENDED_RUNS = "sweep.recommended_runs"
PARENT_COLOR = "#444444"
MAX_NOTE = 8000  # MLflow's longest tag value
BASE_NAME = "sweep.base_name"  # tag on a variant: its name before the report added what sets its sweep apart
# Headline settings that never name a sweep apart: the model is in every name; the device is not a setting.
UNNAMED = (names.P_MODEL, "train.device")
SERIES = "by_frozen_layers"
# Parent series (under by_frozen_layers/) -> table column; one point per finished row, step = its frozen layers.
FIGURES = {
    MAP50: MAP50,
    MAP50_95: MAP50_95,
    "train_time_s": "train_time_s",
    "gpu_mem_mb": "gpu_mem_mb",
    "trainable_pct": "trainable_pct",
}
# Parent summary metric -> table column of the recommended row.
RECOMMENDED_FIGURES = {
    f"sweep/recommended_{MAP50_95}": MAP50_95,
    f"sweep/recommended_{MAP50}": MAP50,
    "sweep/recommended_frozen_layers": "frozen_layers",
    "sweep/recommended_train_time_s": "train_time_s",
    "sweep/recommended_speedup": "speedup",
    f"sweep/recommended_delta_{MAP50_95}": f"delta_{MAP50_95}",
    "sweep/recommended_gpu_mem_mb": "gpu_mem_mb",
}
BEST = f"sweep/best_{MAP50_95}"
SORT_METRICS = (names.P_FROZEN_LAYERS, names.P_TRAINABLE_PCT)
# Variant tag -> the report table's column (as `table.display` formats it).
VIEW_COLUMNS = {
    names.VIEW_MAP: MAP50_95,
    names.VIEW_DELTA: f"Δ {MAP50_95}",
    names.VIEW_SPEEDUP: "speedup",
    names.VIEW_TRAIN_TIME: "train time",
    names.VIEW_GPU_MEM: "GPU mem (MB)",
}


def summarize_parent(
    client: MlflowClient,
    sweep: SweepRef,
    frame: pd.DataFrame,
    table: pd.DataFrame,
    verdict: Verdict,
    report: str,
    timing_doubtful: bool = False,
) -> None:
    """Write the parent's summary and the variants' view of it; `report`: the report as Markdown,
    `timing_doubtful`: it warns that the training times do not compare."""
    parent = client.get_run(sweep.parent_run_id)
    now = int(time.time() * 1000)
    tags = {NOTE: _fit(description(table, verdict, report, timing_doubtful)), RUN_COLOR: PARENT_COLOR}
    if verdict.recommended is not None:
        row = table.loc[verdict.recommended]
        tags.update({RECOMMENDED: row["label"], RECOMMENDED_RUNS: row["run_ids"]})
    client.log_batch(
        sweep.parent_run_id,
        metrics=[*summary_metrics(table, verdict, now), *parent_metrics(table, parent.info.start_time or 0)],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    _mark_variants(client, frame, table, verdict, now)
    _name_variants(client, frame, sweep, distinguishing(client, parent))


def description(table: pd.DataFrame, verdict: Verdict, report: str, timing_doubtful: bool = False) -> str:
    """What the parent's overview shows: the pick (the only line above "Show more"), a short table of
    every variant, how to read the parent's charts, then the whole report."""
    if verdict.recommended is None:
        return f"{verdict.sentence}\n\n{report}"
    row = display(table).iloc[verdict.recommended]
    figures = [f"{MAP50_95} {row[MAP50_95]}"]
    if row["frozen layers"] != "0":  # against no freezing: nothing to say of the unfrozen variant itself
        figures[0] += f" ({row[f'Δ {MAP50_95}']} against no freezing)" * (row[f"Δ {MAP50_95}"] != NA)
        figures += [f"trains {row['speedup']} as fast"] * (row["speedup"] != NA)
    figures.append(f"{row['train time']} of training")
    figures += [f"{row['GPU mem (MB)']} MB of GPU memory"] * (row["GPU mem (MB)"] != NA)
    label = table.at[verdict.recommended, "label"]
    pick = f"**{names.RECOMMENDED_MARK}: {label}** ({row['frozen layers']} layers frozen): {', '.join(figures)}."
    if timing_doubtful:
        pick += " The times do not compare fairly: see the warning below."
    return "\n\n".join([pick, to_markdown(short_table(table, verdict)), charts_note(table), report])


def short_table(table: pd.DataFrame, verdict: Verdict) -> pd.DataFrame:
    """Every variant with the figures that decide: accuracy, what it costs and saves against no freezing."""
    shown = display(table)
    columns = ["frozen layers", MAP50_95, f"Δ {MAP50_95}", "speedup", "train time", "GPU mem (MB)"]
    short = shown[[c for c in columns if (shown[c] != NA).any()]]
    mark = ["★ " if i == verdict.recommended else "" for i in range(len(table))]
    return short.assign(freeze=[m + label for m, label in zip(mark, table["freeze"], strict=True)])[
        ["freeze", *short.columns]
    ]


def charts_note(table: pd.DataFrame) -> str:
    """The parent's charts plot figures against frozen layers; MLflow calls that axis "Step"."""
    levels = table.drop_duplicates("frozen_layers").dropna(subset=["frozen_layers"])
    ticks = ", ".join(
        f"{layers:.0f} = {freeze}" for layers, freeze in zip(levels["frozen_layers"], levels["freeze"], strict=True)
    )
    done = table[table["status"] == FINISHED]
    series = ", ".join(f"`{metric_key(name)}`" for name, column in FIGURES.items() if done[column].notna().any())
    return (
        f"Charts of this run (Model metrics): {series} plot each figure against the number of frozen layers, "
        f'which MLflow labels "Step" ({ticks}).'
    )


def distinguishing(client: MlflowClient, parent) -> str:  # noqa: ANN001 (mlflow's Run)
    """The headline settings this sweep holds fixed at a value another sweep of the experiment does
    not, as `epochs 3 · image size 320`; "" when it is the only sweep or none differ."""
    mine = {k: v for k, v in parent.data.params.items() if k in HEADLINE and k not in UNNAMED}
    query = f"tags.`{names.ROLE}` = '{names.ROLE_PARENT}'"
    others = [
        r
        for r in client.search_runs([parent.info.experiment_id], query, max_results=500)
        if r.info.run_id != parent.info.run_id
    ]
    differ = [k for k, v in mine.items() if any(other.data.params.get(k, v) != v for other in others)]
    return " · ".join(f"{HEADLINE[k]} {mine[k]}" for k in differ)


def _name_variants(client: MlflowClient, frame: pd.DataFrame, sweep: SweepRef, suffix: str) -> None:
    """This sweep's own variant runs (not those it reused from another sweep) named with `suffix`."""
    if tag(names.SWEEP_ID) not in frame:  # runs from before sweeps tagged their variants
        return
    own = frame[frame[tag(names.SWEEP_ID)] == sweep.sweep_id]
    for record in own.to_dict("records"):
        run = client.get_run(record["run_id"])
        base = run.data.tags.get(BASE_NAME, run.info.run_name)
        name = f"{base} · {suffix}" if suffix else base
        if name != run.info.run_name:
            client.set_tag(run.info.run_id, BASE_NAME, base)
            client.update_run(run.info.run_id, name=name)


def summary_metrics(table: pd.DataFrame, verdict: Verdict, timestamp: int) -> list[Metric]:
    """The verdict in numbers, at step 0: the best row's mAP50-95 and the recommended row's figures."""
    if verdict.recommended is None:
        return []
    found = [Metric(BEST, _readable(table.at[verdict.best, MAP50_95]), timestamp, 0)]
    row = table.loc[verdict.recommended]
    found += [Metric(k, _readable(row[c]), timestamp, 0) for k, c in RECOMMENDED_FIGURES.items() if pd.notna(row[c])]
    return found


def _readable(value: float) -> float:
    """4 significant digits: what the Metrics box prints is read, not 11.032063904996903."""
    return float(f"{float(value):.4g}")


def parent_metrics(table: pd.DataFrame, timestamp: int) -> list[Metric]:
    """`by_frozen_layers/<figure>` per finished row at step = frozen layers; one series per model/setting block."""
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
    """`by_frozen_layers/<name>`, or `by_frozen_layers/<block>/<name>` in a sweep over several models or settings."""
    block = re.sub(r"[^\w.\- /:]", "_", block)
    return f"{SERIES}/{block}/{name}" if block else f"{SERIES}/{name}"


def _mark_variants(
    client: MlflowClient, frame: pd.DataFrame, table: pd.DataFrame, verdict: Verdict, timestamp: int
) -> None:
    colors = [to_hex(c) for c in plots.row_colors(len(table))]
    shown = display(table)
    marks = dict.fromkeys(verdict.pareto, names.PARETO_MARK)
    if verdict.recommended is not None:
        marks[verdict.recommended] = names.RECOMMENDED_MARK
    row_of = {run_id: i for i, ids in enumerate(table["run_ids"]) for run_id in ids.split(",")}
    for record in frame.to_dict("records"):
        run_id = record["run_id"]
        i = row_of[run_id]
        tags = {RUN_COLOR: colors[i], names.VIEW_VERDICT: marks.get(i, "")}
        tags.update({tag: shown.iloc[i][column] for tag, column in VIEW_COLUMNS.items() if shown.iloc[i][column] != NA})
        figures = {
            names.DELTA_VS_UNFROZEN: table.iloc[i][f"delta_{MAP50_95}"],
            names.SPEEDUP_VS_UNFROZEN: table.iloc[i]["speedup"],
        }
        metrics = [Metric(k, float(v), timestamp, 0) for k, v in figures.items() if pd.notna(v)]
        metrics += [
            Metric(name, float(record[param(name)]), timestamp, 0)
            for name in SORT_METRICS
            if pd.isna(record.get(metric(name))) and pd.notna(pd.to_numeric(record.get(param(name)), errors="coerce"))
        ]
        client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])


def _fit(description: str) -> str:
    if len(description) <= MAX_NOTE:
        return description
    cut = "\n\n(cut to fit MLflow's description limit: the whole report is in the artifacts under report/)"
    return description[: MAX_NOTE - len(cut)] + cut
