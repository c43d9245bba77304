"""The self-contained HTML page the report and the comparison both write: plots embedded, laid out
for the device's width (a phone does not get a desktop page shrunk to 40%)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def embedded_plots(plots: Iterable[Path], titles: dict[str, str] | None = None) -> list[str]:
    """One titled <img> per PNG, the image inside the page as base64: the page travels alone.
    `titles`: file stem -> heading in words (default: the stem, its underscores as spaces)."""
    parts = []
    for png in plots:
        title = (titles or {}).get(png.stem, png.stem.replace("_", " "))
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<h3>{escape(title)}</h3><img alt='{escape(title)}' src='data:image/png;base64,{data}'>")
    return parts


def page(title: str, style: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{style}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
