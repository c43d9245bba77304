"""Per-epoch rows of an ultralytics results.csv, delivered while training writes them.

With `train.device=0,1` ultralytics trains in a DDP subprocess, where callbacks added in this
process never run. The subprocess appends one row per epoch to results.csv, so following that
file from the launching process is what gets per-epoch metrics into MLflow there.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sweep.tracking.periodic import Periodic

Row = dict[str, float]  # column -> value, columns as ultralytics names them ("epoch", "time", ...)


def parse_rows(lines: list[str]) -> list[Row]:
    """Rows of a results.csv (header first) as numbers; empty cells are left out."""
    return [
        {k.strip(): float(v) for k, v in raw.items() if k is not None and v not in (None, "")}
        for raw in csv.DictReader(lines)
    ]


@dataclass
class ResultsFollower:
    """Polls `path` every `interval_s` in a thread and calls `sink` once per new epoch row, in
    order; the last poll runs on exit, after training has written its last row.

    Only complete lines are read: a row ultralytics is still writing waits for the next poll.
    A file that shrinks (replaced by a fresh training) is read again from its start, and an epoch
    is delivered once at most: rows up to `after_epoch` (already logged by a resumed run's
    earlier attempt) and any epoch already delivered are skipped.
    """

    path: Path
    sink: Callable[[Row], None]
    interval_s: float = 1.0
    after_epoch: int = 0
    _offset: int = field(default=0, init=False)
    _header: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._ticker = Periodic(self.poll, self.interval_s, "freeze-sweep-results")

    def __enter__(self) -> ResultsFollower:
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ticker.stop(timeout_s=None)
        self.poll()

    def poll(self) -> None:
        """Deliver the rows completed since the last poll."""
        for row in parse_rows(self._new_lines()):
            if row.get("epoch", 0) > self.after_epoch:
                self.after_epoch = int(row["epoch"])
                self.sink(row)

    def _new_lines(self) -> list[str]:
        """The header, then the complete lines added since the last read (none if no row is new)."""
        try:
            with self.path.open("rb") as f:
                if f.seek(0, 2) < self._offset:  # replaced by a shorter file: start again
                    self._offset, self._header = 0, None
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        lines = complete.decode().splitlines(keepends=True)
        if self._header is None and lines:
            self._header = lines.pop(0)
        return [self._header, *lines] if lines else []
