"""One self-contained HTML page: summary, per-layer tables, plots embedded as base64 PNG."""

from __future__ import annotations

import math
from pathlib import Path

from sweep.compare.analysis import Comparison
from sweep.compare.answer import paragraphs
from sweep.compare.summary import frozen_violations
from sweep.compare.text import fmt
from sweep.html_page import embedded_plots, page
from sweep.html_page import escape as _e

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; } td.l { text-align: left; }
tr.frozen { background: #eef5ff; } tr.bad { background: #ffd6d6; } tr.new { background: #fff6d6; }
pre { background: #f7f7f7; padding: 0.8em; font-size: 12px; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.warn { color: #a00; font-weight: bold; }
"""


def render_html(c: Comparison, summary: str, plots: list[Path], title: str) -> str:
    """The page as a string: the answer in words first, then `summary` (the terminal summary
    without the words), per-layer tables and `plots` (PNG files, embedded in the given order)."""
    parts = [f"<h1>{_e(title)}</h1>", "<h2>In words</h2>"]
    parts += [f"<p>{_e(paragraph)}</p>" for paragraph in paragraphs(c)]
    bad = [line for v in c.variants for line in frozen_violations(c, v)]
    if bad:
        parts.append("<p class='warn'>Frozen layers that moved:</p><ul>")
        parts += [f"<li class='warn'>{_e(line)}</li>" for line in bad]
        parts.append("</ul>")
    parts.append(f"<h2>Summary</h2><pre>{_e(summary)}</pre>")
    for v in c.variants:
        parts.append(f"<h2>{_e(v.label)} vs the base ({_e(c.base.label)})</h2>")
        parts.append(_variant_table(c, v.label))
    if len(c.variants) > 1:
        parts.append("<h2>Between variants</h2>")
        parts.append(_pairs_table(c))
    parts.append("<h2>Plots</h2>")
    parts += embedded_plots(plots)
    return page(title, STYLE, parts)


def _variant_table(c: Comparison, label: str) -> str:
    variant = next(v for v in c.variants if v.label == label)
    header = [
        "layer",
        "section",
        "status",
        "rel change",
        "cosine",
        "BN-folded rel change",
        "BN mean shift (sd)",
        "BN |ln var ratio|",
        "gamma change",
        "beta change",
        "dead by weights base / variant",
        "dead act base / variant",
        "CKA vs base",
    ]
    rows = []
    cka = c.cka.get((c.base.label, label), {})
    for ch in c.vs_base(variant):
        i = ch.layer.index
        css = "bad" if ch.frozen_violation else "new" if ch.new_tensors else "frozen" if ch.frozen else ""
        rows.append(
            (
                css,
                [
                    ch.layer.name,
                    ch.layer.section,
                    ch.status,
                    fmt(ch.rel_change),
                    fmt(ch.cosine, 4),
                    fmt(ch.folded_rel_change),
                    fmt(ch.bn_mean_shift),
                    fmt(ch.bn_var_log_ratio),
                    fmt(ch.gamma_change),
                    fmt(ch.beta_change),
                    f"{c.dead_weight[c.base.label][i].dead} / {c.dead_weight[label][i].dead}",
                    _dead_pair(c, label, i),
                    fmt(cka.get(i, math.nan)),
                ],
            )
        )
    return _table(header, rows, text_columns=3)


def _pairs_table(c: Comparison) -> str:
    pairs = [p for p in c.pairs if p[0] != c.base.label]
    header = ["layer"] + [f"{a} vs {b}: {what}" for a, b in pairs for what in ("rel change", "cosine", "CKA")]
    rows = []
    for layer in c.layers:
        cells = [layer.name]
        for p in pairs:
            ch = c.changes[p][layer.index]
            cells += [fmt(ch.rel_change), fmt(ch.cosine, 4), fmt(c.cka.get(p, {}).get(layer.index, math.nan))]
        rows.append(("", cells))
    return _table(header, rows, text_columns=1)


def _dead_pair(c: Comparison, label: str, index: int) -> str:
    base, variant = c.dead_act.get(c.base.label, {}).get(index), c.dead_act.get(label, {}).get(index)
    return f"{base.dead} / {variant.dead}" if base and variant else "-"


def _table(header: list[str], rows: list[tuple[str, list[str]]], text_columns: int) -> str:
    """Rows are (css class, cells); the first `text_columns` cells are left-aligned text."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for css, cells in rows:
        tds = "".join(
            f"<td class='l'>{_e(x)}</td>" if j < text_columns else f"<td>{_e(x)}</td>" for j, x in enumerate(cells)
        )
        body.append(f"<tr class='{css}'>{tds}</tr>")
    return f"<table><tr>{head}</tr>\n" + "\n".join(body) + "</table>"
