"""What a budgeted job costs before its first epoch: a restart, when its run is resumed.

A budget's rungs resume every surviving variant in a new job: the process (when the launcher
starts one for it: a SLURM job, a new parallel worker), the claim, the model and data loaders
built again, last.pt loaded. The full grid pays that once a variant; a budget once a rung. The
allotments stay in training seconds (`epoch_time_s`), and the report counts these seconds
beside them (sweep/report/budget.py). Logged as `setup_s` at the step of the job's first epoch:
a step above 1 is a restart.
"""

from __future__ import annotations

import time

import psutil

from sweep.tracking import names
from sweep.tracking.owners import owner_tag
from sweep.tracking.variant_run import VariantRun

_jobs_here: list[float] = []  # when each job of this process began


def job_started(owner: str) -> float:
    """When the job about to run began (epoch seconds). The first job of a process started for the
    sweep's jobs (not the launching process, `owner`) began with its process: the interpreter and
    imports are part of its restart. Any other began now (the launching process's start is the
    sweep's, and a reused worker's was paid by its first job)."""
    now = time.time()
    first = not _jobs_here
    _jobs_here.append(now)
    if not (first and owner):
        return now
    try:
        process = psutil.Process()
        return process.create_time() if owner_tag(process) != owner else now
    except psutil.Error:
        return now


class SetupTime:
    """An ultralytics callback that logs the seconds from the job's start to its first epoch's start."""

    def __init__(self, run: VariantRun, started: float) -> None:
        self.run, self.started, self.logged = run, started, False

    def callbacks(self) -> dict[str, list]:
        return {"on_train_epoch_start": [self._on_train_epoch_start]}

    def _on_train_epoch_start(self, trainer) -> None:
        if not self.logged:
            self.logged = True
            self.run.log_metrics({names.SETUP_TIME: time.time() - self.started}, step=trainer.epoch + 1)
