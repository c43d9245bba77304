"""Number and layer-range formatting shared by the terminal summary, the answer in words and the page."""

from __future__ import annotations

import math
from collections.abc import Iterable


def fmt(value: float, digits: int = 3) -> str:
    """A number for tables: 3 significant digits, '-' for missing."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def ranges(indices: Iterable[int]) -> str:
    """Layer indices as compact ranges: '0-9, 12'; 'none' when empty."""
    values = sorted(set(indices))
    if not values:
        return "none"
    parts, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns, as lines."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
