"""Build a sweep's report and put it where it is looked for: a folder, and the sweep's parent run.

`write_report` is what a multirun calls when it ends; the `freeze-sweep-report` command calls
`make_report` and prints the table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from sweep.report import plots
from sweep.report.budget import budget_line
from sweep.report.context import sweep_settings
from sweep.report.html import render_page
from sweep.report.parent import summarize_parent
from sweep.report.runs import EPOCH_SERIES, MAP50_95, RESOURCE_SERIES, STOPPED, load_histories, load_runs
from sweep.report.table import FINISHED, compact, csv_frame, display, summarize, to_markdown
from sweep.report.timing import timing_warnings, training_spans
from sweep.report.verdict import Verdict, decide
from sweep.tracking.store import connect, sqlite_path
from sweep.tracking.sweeps import SweepRef, sweep_of_parent

ARTIFACT_DIR = "report"  # in the parent run; a report over several sweeps goes under report/<their ids>
MAX_NAME = 100
log = logging.getLogger("sweep")


@dataclass
class Report:
    title: str
    out_dir: Path
    markdown: str  # the verdict, the table and its notes, as printed
    table: pd.DataFrame  # numeric, one row per configuration (what report.csv holds)
    files: list[Path]
    verdict: Verdict
    logged_to: list[str] = field(default_factory=list)  # parent run ids that hold the files
    warnings: list[str] = field(default_factory=list)


def write_report(
    client_or_uri: MlflowClient | str,
    parent_run_ids: str | Sequence[str],
    out_dir: Path | None = None,
    log_artifacts: bool = True,
    tolerance: float | None = None,
) -> Path:
    """Write the report of the sweep(s) with these parent runs; returns the folder it is in.

    The folder defaults to `<sweep dir>/report` (the parent's `sweep.dir` tag), and the files are
    logged under `report/` of the parent run, so the MLflow UI shows them, and the parent run of a
    single sweep becomes its summary (`sweep.report.parent`). Raises
    `sweep.errors.ConfigError` (one line) for an unknown parent run or a sweep with no variant run.
    """
    client = connect(client_or_uri) if isinstance(client_or_uri, str) else client_or_uri
    ids = [parent_run_ids] if isinstance(parent_run_ids, str) else list(parent_run_ids)
    sweeps = [sweep_of_parent(client, run_id) for run_id in ids]
    return make_report(client, sweeps, out_dir, log_artifacts, tolerance).out_dir


def make_report(
    client: MlflowClient,
    sweeps: Sequence[SweepRef],
    out_dir: Path | None = None,
    log_artifacts: bool = True,
    tolerance: float | None = None,
    processes: int = 1,
) -> Report:
    """Runs -> table and verdict -> plots -> files -> the parent run(s); what the command prints is in it.

    `tolerance`: how much lower mAP50-95 may be than the best for a cheaper variant to be recommended
    (default: the replicates' spread, else 0.01). `processes=2` draws the plots on a forked helper
    too: the `freeze-sweep-report` command's choice. A sweep's own process keeps to 1: it holds
    torch and the trainings' memory, which a fork would duplicate in every RSS figure for a
    second saved once per sweep.
    """
    frame = load_runs(client, sweeps)
    histories = load_histories(client, frame, EPOCH_SERIES)
    table = summarize(frame, histories)
    verdict = decide(table, tolerance)
    drawn = frame["run_id"].isin(plots.resource_runs(table).values())
    load_histories(client, frame[drawn], RESOURCE_SERIES, into=histories)
    out = Path(out_dir) if out_dir else default_out_dir(client.tracking_uri, sweeps)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "against_freeze": partial(plots.against_freeze, table, verdict.recommended),
        "accuracy_vs_time": partial(plots.accuracy_vs_time, table),
        "map_curves": partial(plots.epoch_curves, table, histories),
        "resources": partial(plots.resource_curves, table, histories),
    }
    pngs = plots.draw_all(figures, out, processes)
    title = f"freeze-sweep report: {'sweep' if len(sweeps) == 1 else 'sweeps'} {', '.join(s.sweep_id for s in sweeps)}"
    shown = compact(display(table))
    notes = table_notes(table)
    settings = sweep_settings(frame)
    summary = summary_lines(table, verdict, settings)
    summary += [line for line in [budget_line(client, sweeps, frame, histories)] if line]
    cautions = timing_warnings(frame, table, training_spans(client, frame))
    markdown = "\n\n".join(
        [
            "\n\n".join(summary),
            *["\n".join(f"> warning: {w}" for w in cautions)] * bool(cautions),
            to_markdown(shown),
            *["\n".join(f"- {n}" for n in notes)] * bool(notes),
        ]
    )
    meta = {
        "tracking URI": client.tracking_uri,
        "parent runs": ", ".join(f"{s.parent_run_id} ({s.sweep_id})" for s in sweeps),
        "runs": ", ".join(f"{n} {status}" for status, n in frame["status"].value_counts().items()),
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    csv_frame(table).to_csv(out / "report.csv", index=False)
    files = [
        _write(out / "report.md", f"# {title}\n\n{markdown}\n"),
        _write(
            out / "report.html", render_page(title, meta, summary, cautions, shown, notes, pngs, row_marks(verdict))
        ),
        out / "report.csv",
        *pngs,
    ]
    report = Report(title, out, markdown, table, files, verdict)
    if log_artifacts:
        _log(client, sweeps, report)
        if len(sweeps) == 1 and report.logged_to:
            whole = f"## {title}\n\n{markdown}\n\nFull report with plots: artifacts, `report/report.html`."
            summarize_parent(client, sweeps[0], frame, table, verdict, whole, timing_doubtful=bool(cautions))
    return report


def summary_lines(table: pd.DataFrame, verdict: Verdict, settings: dict[str, str]) -> list[str]:
    """The report's opening paragraphs: the recommendation and why, the Pareto front, what was swept and held fixed."""
    lines = [f"**Recommendation:** {verdict.sentence}"]
    if verdict.pareto:
        costs = " and ".join({"train_time_s": "training time", "gpu_mem_mb": "GPU memory"}[c] for c in verdict.costs)
        front = ", ".join(table.loc[verdict.pareto, "label"])
        lines.append(f"**Pareto front** (no other variant has a higher best {MAP50_95} at no more {costs}): {front}.")
    lines += [f"**Swept:** {settings['swept']}.", f"**Held fixed:** {settings['held fixed']}."]
    return lines


def row_marks(verdict: Verdict) -> dict[int, str]:
    """Table position -> the HTML row class that highlights it."""
    marks = dict.fromkeys(verdict.pareto, "pareto")
    if verdict.recommended is not None:
        marks[verdict.recommended] = "recommended"
    return marks


def default_out_dir(tracking_uri: str, sweeps: Sequence[SweepRef]) -> Path:
    """`<sweep dir>/report` for one sweep whose folder is here; else `<outputs>/reports/<ids>`.

    `<outputs>` is the folder of a SQLite store (the project's `outputs/` by default), else
    `./outputs`.
    """
    if len(sweeps) == 1 and sweeps[0].sweep_dir and Path(sweeps[0].sweep_dir).is_dir():
        return Path(sweeps[0].sweep_dir) / ARTIFACT_DIR
    database = sqlite_path(tracking_uri)
    outputs = database.parent if database else Path.cwd() / "outputs"
    return outputs / "reports" / report_name(sweeps)


def report_name(sweeps: Sequence[SweepRef]) -> str:
    name = "+".join(s.sweep_id for s in sweeps)
    return name if len(name) <= MAX_NAME else f"{sweeps[0].sweep_id}+{len(sweeps) - 1}-more"


def table_notes(table: pd.DataFrame) -> list[str]:
    """What a reader needs to read the table right, only where it applies."""
    notes = []
    if (table["n"] > 1).any():
        notes.append("n > 1: mean ± std over runs that differ only in seed, device or workers (replicates).")
    no_base = table.loc[~table["has_baseline"], "label"].tolist()
    if no_base:
        notes.append(
            "speedup and Δ are against the finished unfrozen variant (0 frozen layers) of the same configuration; "
            f"n/a for rows without one: {', '.join(no_base)}."
        )
    if table["gpu_mem_mb"].isna().all():
        notes.append("GPU columns n/a: no run logged GPU figures (CPU runs); see the resources plot for CPU RSS.")
    unfinished = table.loc[~table["status"].isin([FINISHED, STOPPED]), "label"].tolist()
    if unfinished:
        notes.append(f"not finished, shown apart and without best metrics: {', '.join(unfinished)}.")
    notes.append(
        "train time: from the start of training to its end, final validation included; time/epoch: mean epoch "
        "time (train + val); GPU mem: peak memory reserved by torch in the training process."
    )
    return notes


def _log(client: MlflowClient, sweeps: Sequence[SweepRef], report: Report) -> None:
    artifact_path = ARTIFACT_DIR if len(sweeps) == 1 else f"{ARTIFACT_DIR}/{report_name(sweeps)}"
    for sweep in sweeps:
        try:
            for path in report.files:
                client.log_artifact(sweep.parent_run_id, str(path), artifact_path)
            report.logged_to.append(sweep.parent_run_id)
        except Exception as error:  # the report on disk stands even when the artifact store fails
            message = f"report not logged to parent run {sweep.parent_run_id}: {type(error).__name__}: {error}"
            log.warning(message)
            report.warnings.append(message)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
