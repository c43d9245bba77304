"""The self-contained HTML page the report and the comparison both write: plots embedded."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def embedded_plots(plots: Iterable[Path]) -> list[str]:
    """One titled <img> per PNG, the image inside the page as base64: the page travels alone."""
    parts = []
    for png in plots:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<h3>{escape(png.stem)}</h3><img alt='{escape(png.stem)}' src='data:image/png;base64,{data}'>")
    return parts


def page(title: str, style: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{style}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
