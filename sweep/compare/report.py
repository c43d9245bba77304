"""Write a Comparison to a folder: CSV tables, PNG plots and index.html."""

from __future__ import annotations

import csv
import math
from functools import partial
from pathlib import Path

from sweep.compare import plots
from sweep.compare.analysis import Comparison, timed
from sweep.compare.html import render_html
from sweep.compare.summary import summary_text
from sweep.forked_jobs import run_jobs

# Relative drawing time of each figure (seconds on the benchmark, 3 models), to hand out the costliest first.
PLOT_COST = {"bn_drift": 2.2, "weight_distributions": 1.9, "pairs_by_layer": 1.4, "weight_change": 1.3}


def write_report(c: Comparison, out_dir: Path, title: str, top: int = 5) -> Path:
    """Write everything under `out_dir`, the summary with `top` most changed layers per variant;
    return the HTML page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with timed(c.timings, "tables"):
        _write_pairs_csv(c, out_dir / "layers.csv")
        _write_dead_csv(c, out_dir / "dead_channels.csv")
        (out_dir / "summary.txt").write_text(summary_text(c, top) + "\n")
    with timed(c.timings, "plots"):
        pngs = _write_plots(c, out_dir)
    with timed(c.timings, "html"):
        page = out_dir / "index.html"
        page.write_text(render_html(c, summary_text(c, top, words=False), pngs, title), encoding="utf-8")
    return page


def _write_plots(c: Comparison, out_dir: Path) -> list[Path]:
    """Every PNG, drawn on two processes (`sweep.forked_jobs`); returned in the page's order."""
    jobs = [
        (plots.plot_weight_change, out_dir / "weight_change.png"),
        (plots.plot_bn_drift, out_dir / "bn_drift.png"),
        (plots.plot_distributions, out_dir / "weight_distributions.png"),
        (plots.plot_dead_channels, out_dir / "dead_channels.png"),
        (plots.plot_pairs, out_dir / "pairs_by_layer.png"),
    ]
    if c.cka:
        jobs.append((plots.plot_cka_matrices, out_dir / "cka_section_ends.png"))
    first = c.models[0].label
    for layer in (la for la in c.layers if la.index in c.feature_maps.get(first, {})):
        jobs.append((partial(plots.plot_feature_maps, layer=layer), out_dir / f"feature_maps_layer{layer.index}.png"))
    run_jobs([partial(plot, c, path=path) for plot, path in jobs], costs=[PLOT_COST.get(p.stem, 1) for _, p in jobs])
    return [path for _, path in jobs]


def _write_pairs_csv(c: Comparison, path: Path) -> None:
    """One row per (reference, other) pair and layer: weight, BN and CKA numbers."""
    fields = [
        "reference",
        "other",
        "layer",
        "name",
        "section",
        "status",
        "frozen",
        "frozen_violation",
        "new_tensors",
        "rel_change",
        "cosine",
        "folded_rel_change",
        "bn_mean_shift",
        "bn_var_log_ratio",
        "gamma_change",
        "beta_change",
        "cka",
    ]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for pair in c.pairs:
            for ch in c.changes[pair]:
                writer.writerow(
                    [
                        *pair,
                        ch.layer.index,
                        ch.layer.name,
                        ch.layer.section,
                        ch.status,
                        ch.frozen,
                        ch.frozen_violation,
                        len(ch.new_tensors),
                        ch.rel_change,
                        ch.cosine,
                        ch.folded_rel_change,
                        ch.bn_mean_shift,
                        ch.bn_var_log_ratio,
                        ch.gamma_change,
                        ch.beta_change,
                        c.cka.get(pair, {}).get(ch.layer.index, math.nan),
                    ]
                )


def _write_dead_csv(c: Comparison, path: Path) -> None:
    """One row per model and layer: dead channels by BN-folded weights and by activation std."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["model", "layer", "name", "dead_weights", "channels_weights", "dead_activation", "channels_activation"]
        )
        for m in c.models:
            for layer in c.layers:
                by_weights = c.dead_weight[m.label][layer.index]
                act = c.dead_act.get(m.label, {}).get(layer.index)
                act_cells = [act.dead, act.total] if act else ["", ""]
                writer.writerow([m.label, layer.index, layer.name, by_weights.dead, by_weights.total, *act_cells])
