"""The report's figures, one table row = one colour in every figure.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, safe in any process),
and returned as Figures so the lines can be read back before they are saved.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sweep.forked_jobs import run_jobs
from sweep.report.runs import CPU_SERIES, GPU_SERIES, MAP50, MAP50_95, History
from sweep.report.table import FINISHED, time_unit
from sweep.tracking import names

MAX_RESOURCE_ROWS = 12
LEGEND_PAD_IN = 0.1  # right of a legend outside the axes, as bbox_inches="tight" left it
# Relative drawing times over 50 variants (bench/bench_report.py), for `run_jobs`'s order.
DRAW_COST = {"map_curves": 4, "resources": 2, "against_freeze": 1.5, "accuracy_vs_time": 1}
SERIES_TITLES = {
    names.GPU_MEMORY: "GPU memory used (MB, whole device)",
    names.GPU_UTIL: "GPU utilisation (%)",
    names.CPU_RSS: "CPU RSS (MB), CPU runs",
    names.CPU_UTIL: "CPU utilisation (% of one core), CPU runs",
}


# What each figure shows, in words: the report page's headings.
TITLES = {
    "against_freeze": "Accuracy and training cost against freeze level",
    "accuracy_vs_time": "Accuracy against training time",
    "map_curves": "Validation accuracy per epoch",
    "resources": "Memory and utilisation during training",
}


def row_colors(n: int) -> list:
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


def epoch_curves(table: pd.DataFrame, histories: History) -> Figure:
    """mAP50 and mAP50-95 per epoch; replicates as their mean with a ±1 std band."""
    fig = Figure(figsize=(12, 4.8))
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, (MAP50, MAP50_95), strict=True):
        for i, color in enumerate(row_colors(len(table))):
            row = table.iloc[i]
            runs = _series(histories, row["run_ids"], key)
            if not runs:
                continue
            stacked = pd.concat(runs, axis=1)
            mean = stacked.mean(axis=1)
            marker = "o" if len(mean) <= 30 else None
            style = _style(row["status"])
            ax.plot(mean.index, mean.values, color=color, label=row["label"], marker=marker, ms=3, ls=style)
            if len(runs) > 1:
                std = stacked.std(axis=1).fillna(0)
                ax.fill_between(mean.index, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        ax.set(xlabel="epoch", ylabel=key, title=f"validation {key} per epoch")
        _finish(ax)
    _legend(fig, axes[0])
    return fig


def resource_runs(table: pd.DataFrame) -> dict[int, str]:
    """Row position -> the run whose series the resource plot draws for it.

    One run per row (replicates run alike), and all rows or MAX_RESOURCE_ROWS spread over the table:
    dozens of overlapping time series read as noise, and their points are most of what a report reads.
    """
    n = len(table)
    rows = (
        range(n)
        if n <= MAX_RESOURCE_ROWS
        else {round(i * (n - 1) / (MAX_RESOURCE_ROWS - 1)) for i in range(MAX_RESOURCE_ROWS)}
    )
    return {i: table["run_ids"].iloc[i].split(",")[0] for i in sorted(rows)}


def resource_curves(table: pd.DataFrame, histories: History) -> Figure:
    """GPU memory and utilisation over training time; CPU RSS and utilisation for CPU runs."""
    colors = row_colors(len(table))
    drawn = resource_runs(table)

    def has(run_id: str, keys: tuple[str, ...]) -> bool:
        return any(_series(histories, run_id, key) for key in keys)

    gpu = [i for i, run_id in drawn.items() if has(run_id, GPU_SERIES)]
    cpu = [i for i, run_id in drawn.items() if i not in gpu and has(run_id, CPU_SERIES)]
    panels = [(keys, chosen) for keys, chosen in ((GPU_SERIES, gpu), (CPU_SERIES, cpu)) if chosen]
    fig = Figure(figsize=(12, 4.2 * max(1, len(panels))))
    if not panels:
        _empty(fig.subplots(), "no resource series logged")
        return fig
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for (keys, chosen), line in zip(panels, axes, strict=True):
        for key, ax in zip(keys, line, strict=True):
            for i in chosen:
                row = table.iloc[i]
                for series in _series(histories, drawn[i], key):
                    ax.plot(
                        series.index, series.values, color=colors[i], label=row["label"], lw=1, ls=_style(row["status"])
                    )
            ax.set(xlabel="seconds since training start", ylabel=key, title=SERIES_TITLES[key])
            _finish(ax)
    if len(drawn) < len(table) or (table["n"] > 1).any():
        fig.suptitle(f"{len(drawn)} of {len(table)} rows, one run each", fontsize=9, y=0.995)
    _legend(fig, *axes[:, 0])
    return fig


def accuracy_vs_time(table: pd.DataFrame) -> Figure:
    """Best mAP50-95 against training time, one point per row, named by its freeze (no legend).

    Error bars: ±1 std over replicates.
    """
    fig = Figure(figsize=(7, 5.5))
    ax = fig.subplots()
    done = table[table["train_time_s"].notna() & table[MAP50_95].notna()]
    if done.empty:
        _empty(ax, "no finished variant yet")
        return fig
    unit, scale = time_unit(done["train_time_s"].max())
    colors = row_colors(len(table))
    for i in range(len(table)):
        row = table.iloc[i]
        if row.name not in done.index:
            continue
        x, y = row["train_time_s"] / scale, row[MAP50_95]
        if row["n"] > 1:
            xerr, yerr = row["train_time_s_std"] / scale, row[f"{MAP50_95}_std"]
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=colors[i], capsize=3, label=row["label"])
        else:
            ax.plot([x], [y], "o", color=colors[i], label=row["label"])
        ax.annotate(row["freeze"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set(xlabel=f"training time ({unit})", ylabel=f"best {MAP50_95}", title="accuracy against training time")
    _finish(ax)
    fig.subplots_adjust(left=0.12, right=0.95, bottom=0.1, top=0.92)
    return fig


def against_freeze(table: pd.DataFrame, recommended: int | None = None) -> Figure:
    """Best mAP50-95, best mAP50, and training time with GPU memory against frozen layers, stacked.

    Each accuracy metric on its own axis, so the one-point differences that decide the verdict show;
    one column, so it reads at phone width. One line per model/setting block, replicates as mean ± std;
    tick labels add the trainable share of parameters; the recommended row is ringed.
    """
    fig = Figure(figsize=(6.4, 9.6))
    map50_95, map50, cost = fig.subplots(3, 1, sharex=True)
    done = table[(table["status"] == FINISHED) & table[MAP50_95].notna()]
    if done.empty:
        for ax in (map50_95, map50, cost):
            _empty(ax, "no finished variant yet")
        return fig
    blocks = list(done.groupby(["model", "config"], sort=False))
    memory = cost.twinx() if done["gpu_mem_mb"].notna().any() else None
    unit, scale = time_unit(done["train_time_s"].max())
    for b, ((model, config), block) in enumerate(blocks):
        name = f"{model} {config}".strip() if len(blocks) > 1 else ""
        x = block["frozen_layers"]
        for ax, key in ((map50_95, MAP50_95), (map50, MAP50)):
            ax.errorbar(
                x, block[key], yerr=block[f"{key}_std"].fillna(0), marker="o", capsize=3, color=f"C{b}", label=name
            )
        cost.errorbar(
            x,
            block["train_time_s"] / scale,
            yerr=block["train_time_s_std"].fillna(0) / scale,
            marker="o",
            capsize=3,
            color=f"C{b}",
            label=f"training time {name}".strip(),
        )
        if memory is not None and block["gpu_mem_mb"].notna().any():
            memory.plot(x, block["gpu_mem_mb"], marker="^", ls=":", color=f"C{b}", label=f"GPU memory {name}".strip())
    if recommended is not None and recommended in done.index:
        row = done.loc[recommended]
        map50_95.plot(
            [row["frozen_layers"]], [row[MAP50_95]], "o", ms=16, mfc="none", mec="green", mew=2, label="recommended"
        )
    levels = done.drop_duplicates("frozen_layers").sort_values("frozen_layers")
    ticks = [
        f"{layers:.0f}\n{pct:.0f}%"
        for layers, pct in zip(levels["frozen_layers"], levels["trainable_pct"], strict=True)
    ]
    for ax in (map50_95, map50, cost):
        ax.set_xticks(levels["frozen_layers"], ticks)
        ax.tick_params(labelbottom=True)
        _finish(ax)
    cost.set_xlabel("frozen layers (trainable share of parameters)")
    map50_95.set(ylabel=f"best {MAP50_95}", title=f"best {MAP50_95} (the verdict's measure)")
    map50.set(ylabel=f"best {MAP50}", title=f"best {MAP50}")
    cost.set(ylabel=f"training time ({unit})", title="training cost")
    handles = cost.get_legend_handles_labels()
    if memory is not None:
        memory.set_ylabel("peak GPU memory reserved (MB)")
        more = memory.get_legend_handles_labels()
        handles = (handles[0] + more[0], handles[1] + more[1])
    if map50_95.get_legend_handles_labels()[0]:
        map50_95.legend(fontsize=9)
    cost.legend(*handles, fontsize=9)
    fig.subplots_adjust(left=0.14, right=0.86, bottom=0.08, top=0.96, hspace=0.45)
    return fig


def draw_all(builders: dict[str, Callable[[], Figure]], out: Path, processes: int = 1) -> list[Path]:
    """Each figure built and saved as `<name>.png` in `out`; with `processes=2`, on a forked helper
    too (`sweep.forked_jobs`): drawing is most of the report's own time. Returns the paths in the
    order given."""
    paths = {name: out / f"{name}.png" for name in builders}
    jobs = [partial(_build_and_save, build, paths[name]) for name, build in builders.items()]
    run_jobs(jobs, processes, costs=[DRAW_COST.get(name, 1) for name in builders])
    return list(paths.values())


def _build_and_save(build: Callable[[], Figure], path: Path) -> None:
    save(build(), path)


def save(fig: Figure, path: Path) -> Path:
    """PNG in one draw. A legend right of the axes widens the figure to fit (fixed margins:
    constrained layout took twice as long, and bbox_inches="tight" draws everything twice)."""
    canvas = FigureCanvasAgg(fig)
    if fig.legends:
        _widen_for_legends(fig, canvas.get_renderer())
    fig.savefig(path, dpi=fig.dpi)
    return path


def _widen_for_legends(fig: Figure, renderer) -> None:  # noqa: ANN001 (matplotlib's RendererAgg)
    """Keeps the axes and legends where they are in inches and adds width on the right for the legends."""
    old = fig.bbox.width
    anchors = [legend.get_bbox_to_anchor().x0 for legend in fig.legends]  # pixels
    pad = LEGEND_PAD_IN * fig.dpi
    needed = max(
        x0
        + legend.borderaxespad * legend.prop.get_size_in_points() * fig.dpi / 72  # its gap to the anchor
        + legend.get_window_extent(renderer).width
        for x0, legend in zip(anchors, fig.legends, strict=True)
    )
    if needed + pad <= old:
        return
    new = needed + pad
    params = fig.subplotpars
    fig.set_figwidth(fig.get_figwidth() * new / old)
    fig.subplots_adjust(left=params.left * old / new, right=params.right * old / new)
    for x0, legend in zip(anchors, fig.legends, strict=True):
        y = legend.get_bbox_to_anchor().y0 / fig.bbox.height
        legend.set_bbox_to_anchor((x0 / new, y), transform=fig.transFigure)


def _series(histories: History, run_ids: str, key: str) -> list[pd.Series]:
    found = [histories.get(run_id, {}).get(key) for run_id in run_ids.split(",")]
    return [s for s in found if s is not None and len(s)]


def _style(status: str) -> str:
    return "-" if status == FINISHED else "--"


def _finish(ax: Axes) -> None:
    ax.grid(alpha=0.3)


def _legend(fig: Figure, *axes: Axes) -> None:
    """One legend for the figure, right of the axes: each label once, in the order first drawn."""
    height = fig.get_figheight()  # margins in inches: tick labels and titles keep their size
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.5 / height, top=1 - 0.4 / height, wspace=0.22, hspace=0.35)
    found: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            found.setdefault(label, handle)
    labels, handles = list(found), list(found.values())
    if handles:
        small = len(labels) > 12
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.99, 0.92), fontsize=6 if small else 8)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
