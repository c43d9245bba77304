"""A budgeted rung's job: train until the run's training time reaches the rung's allotment, then pause.

Training time is what the run logs as `epoch_time_s` (from each epoch's start to the end of its
validation, on the variant's device: GPU-seconds on a GPU), summed over every epoch of the run,
earlier rungs included. The pause comes at the first epoch end that reaches the allotment:
ultralytics has saved last.pt by then, `trainer.stop` ends the loop, and last.pt keeps its
optimizer state, so the next rung resumes the run exactly where it paused. The run ends SCHEDULED:
not RUNNING (nobody trains it), not FINISHED (it has epochs to go).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from sweep.budget.checks import budget_of
from sweep.budget.rule import allotment
from sweep.tracking.claims import training_time_s
from sweep.tracking.variant_run import VariantRun

PAUSED = "SCHEDULED"  # the MLflow status of a paused run
KEPT_NAME = "last-kept-for-the-next-rung.pt"  # what ultralytics' final_eval is pointed at instead of last.pt


def rung_allotment(sweep: Mapping) -> float | None:
    """The training seconds a job of a budgeted rung trains its variant to, from its `sweep`
    settings; None outside a rung (no budget, or the last variant left: it trains to the end)."""
    budget, rung = budget_of(sweep), sweep.get("rung")
    if budget is None or rung is None:
        return None
    return allotment(budget.seconds, budget.eta, rung)


class RungPause:
    """ultralytics callbacks that pause a training once the run's training time reaches `allotment_s`."""

    def __init__(self, run: VariantRun, rung: int, allotment_s: float, spent_s: float) -> None:
        self.run, self.rung, self.allotment_s, self.spent_s = run, rung, allotment_s, spent_s
        self.paused = False
        self._epoch, self._started, self._last = -1, 0.0, None

    @classmethod
    def of(cls, sweep: Mapping, run: VariantRun) -> RungPause | None:
        """The job's pause from its `sweep` settings (plain values), None outside a budgeted rung (the
        last variant left trains to the end). A stop recorded by an earlier attempt was cleared by
        the claim that continued the run (sweep/tracking/claims.py)."""
        until_s = rung_allotment(sweep)
        if until_s is None:
            return None
        return cls(run, sweep["rung"], until_s, training_time_s(run.client, run.run_id))

    def skip(self) -> None:
        """The run trained its allotment already: it pauses again without training."""
        self.paused = True
        self.run.client.set_terminated(self.run.run_id, PAUSED)

    def note(self) -> str:
        """What the job did, for the console and its variant.json."""
        return f"paused at rung {self.rung}: {self.spent_s:.1f} s of training (allotment {self.allotment_s:.1f} s)"

    @property
    def reached(self) -> bool:
        """The run trained its allotment already (a re-run of the rung): nothing to train."""
        return self.spent_s >= self.allotment_s

    def callbacks(self) -> dict[str, list]:
        return {
            "on_train_epoch_start": [self._on_epoch_start],
            "on_fit_epoch_end": [self._on_fit_epoch_end],
            "on_train_end": [self._on_train_end],
        }

    def _on_epoch_start(self, trainer) -> None:
        self._epoch, self._started = trainer.epoch, time.monotonic()

    def _on_fit_epoch_end(self, trainer) -> None:
        if trainer.epoch != self._epoch:  # ultralytics' final validation of best.pt, not an epoch
            return
        self.spent_s += time.monotonic() - self._started
        last_epoch = trainer.epoch + 1 >= trainer.epochs
        if self.reached and not last_epoch and not trainer.stop:  # trainer.stop: early stopping ends it anyway
            trainer.stop, self.paused = True, True
            self.run.end_status = PAUSED
            # ultralytics' final_eval strips the optimizer from last.pt: pointed elsewhere, it leaves
            # last.pt resumable (it still validates best.pt, so the run has best/* up to here).
            self._last, trainer.last = trainer.last, trainer.last.with_name(KEPT_NAME)

    def _on_train_end(self, trainer) -> None:
        if self._last is not None:
            trainer.last = self._last
