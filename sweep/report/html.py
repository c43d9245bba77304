"""The report as one self-contained HTML page: the table, notes, and the plots as base64 PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sweep.html_page import embedded_plots, page
from sweep.html_page import escape as _e

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } td.text { text-align: left; white-space: normal; }
tr.FAILED, tr.KILLED { background: #ffd6d6; } tr.RUNNING, tr.SCHEDULED { background: #fff6d6; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
ul.meta { color: #555; font-size: 13px; }
"""
TEXT_COLUMNS = {"model", "freeze", "status", "config", "note"}


def render_page(title: str, meta: dict[str, str], shown: pd.DataFrame, notes: list[str], plots: list[Path]) -> str:
    """`shown` is the formatted table (`table.display`); `plots` are PNG files, embedded in order."""
    parts = [f"<h1>{_e(title)}</h1>", "<ul class='meta'>"]
    parts += [f"<li>{_e(key)}: {_e(value)}</li>" for key, value in meta.items()]
    parts += ["</ul>", "<h2>Variants</h2>", _table(shown)]
    if notes:
        parts += ["<ul>", *[f"<li>{_e(note)}</li>" for note in notes], "</ul>"]
    parts.append("<h2>Plots</h2>")
    parts += embedded_plots(plots)
    return page(title, STYLE, parts)


def _table(shown: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in shown.columns)
    rows = []
    for record in shown.to_dict("records"):
        cells = "".join(
            f"<td class='text'>{_e(v)}</td>" if c in TEXT_COLUMNS else f"<td>{_e(v)}</td>" for c, v in record.items()
        )
        rows.append(f"<tr class='{_e(record.get('status', ''))}'>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
