"""What a sweep shows in the terminal: per variant a `[k/N]` header, one line per epoch with the
time left for the whole sweep, one result line. Ultralytics' own output (per-layer freeze lines,
model summaries, argument dumps, progress bars) goes to the variant's train.log; `sweep.verbose=true`
shows it as well.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sweep.tracking import names
from sweep.tracking.credentials import redact

QUIET_LOGGERS = ("mlflow.system_metrics",)  # "started/stopped monitoring" lines, twice per variant


@contextlib.contextmanager
def ultralytics_output_to(path: Path, verbose: bool) -> Iterator[None]:
    """Ultralytics' log and progress bars into `path` (its logger does not propagate to Hydra's
    handlers); on the console only its warnings, unless `verbose`."""
    from ultralytics.utils import LOGGER

    with path.open("a") as log_file:
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
        consoles = [h for h in LOGGER.handlers if h is not handler]
        levels = [h.level for h in consoles]
        quiet = [logging.getLogger(name) for name in QUIET_LOGGERS]
        quiet_levels = [q.level for q in quiet]
        try:
            if not verbose:
                for h in consoles:
                    h.setLevel(logging.WARNING)
                for q in quiet:
                    q.setLevel(logging.WARNING)
            with contextlib.redirect_stdout(log_file) if not verbose else contextlib.nullcontext():
                yield  # ultralytics' progress bars write to sys.stdout
        finally:
            LOGGER.removeHandler(handler)
            for h, level in zip(consoles, levels, strict=True):
                h.setLevel(level)
            for q, level in zip(quiet, quiet_levels, strict=True):
                q.setLevel(level)


@contextlib.contextmanager
def ultralytics_quiet() -> Iterator[None]:
    """Ultralytics' info lines off while the tool only asks it a question (builds a model to count
    its parameters, checks an optimizer name): they would read as if training had started."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class Progress:
    """Ultralytics callbacks that print the variant's progress to the terminal the sweep runs in.

    The time left for the sweep assumes the variants still to come take as long per epoch as
    this one (a frozen variant is faster, so this errs long), shared among parallel workers.
    """

    label: str  # e.g. "[2/3] backbone 10/23 · yolov8n-demo"
    epochs: int
    variants_after: int = 0  # variants of the sweep still to start after this one
    parallel: int = 1
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def __post_init__(self) -> None:
        self._started = time.monotonic()
        self._first_epoch: int | None = None
        self._trained_epoch = -1

    def callbacks(self) -> dict[str, list]:
        return {"on_train_epoch_end": [self._on_train_epoch_end], "on_fit_epoch_end": [self._on_fit_epoch_end]}

    def _on_train_epoch_end(self, trainer) -> None:
        self._trained_epoch = trainer.epoch

    def header(self, text: str) -> None:
        self._print(f"{self.label}: {text}")

    def _on_fit_epoch_end(self, trainer) -> None:
        if trainer.epoch != self._trained_epoch:  # ultralytics' final re-validation of best.pt
            return
        epoch = trainer.epoch + 1
        if self._first_epoch is None:
            self._first_epoch = epoch
        per_epoch = (time.monotonic() - self._started) / (epoch - self._first_epoch + 1)
        left = per_epoch * ((self.epochs - epoch) + self.epochs * self.variants_after / self.parallel)
        metrics = trainer.metrics or {}
        map50 = metrics.get(names.UL_MAP50)
        shown = f"  mAP50 {map50:.3f}" if map50 is not None else ""
        self._print(
            f"{self.label}  epoch {epoch}/{self.epochs}{shown}  {per_epoch:.1f} s/epoch  sweep: ~{duration(left)} left"
        )

    def result(self, text: str) -> None:
        self._print(f"{self.label}  {text}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def thread_errors_in_one_line() -> None:
    """An exception that ends a background thread (ultralytics saves its plots from threads) is
    one warning line, not a traceback: a full disk must not bury the sweep's one-line error and
    summary under a traceback per plot."""
    import threading

    def one_line(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        text = str(args.exc_value).strip().splitlines()
        name = args.thread.name if args.thread else "?"
        reason = redact(text[0]) if text else ""
        logging.getLogger("sweep").warning("background thread %s failed: %s: %s", name, args.exc_type.__name__, reason)

    threading.excepthook = one_line
