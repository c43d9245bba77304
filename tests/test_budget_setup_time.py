"""A budgeted job's set-up before its first epoch (sweep/budget/setup_time.py): where it starts."""

from __future__ import annotations

import time

import psutil
import pytest

from sweep.budget import setup_time
from sweep.tracking.owners import owner_tag


def test_a_process_started_for_the_jobs_counts_its_own_start_in_its_first_jobs_set_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process_start = psutil.Process().create_time()
    monkeypatch.setattr(setup_time, "_jobs_here", [])
    before = time.time()
    assert setup_time.job_started("otherhost:1:1") == process_start  # a worker or SLURM job: its interpreter, imports
    assert setup_time.job_started("otherhost:1:1") >= before  # its next job: from now (the process was paid for)
    monkeypatch.setattr(setup_time, "_jobs_here", [])
    assert setup_time.job_started(owner_tag()) >= before  # the launching process: its start is the sweep's
    monkeypatch.setattr(setup_time, "_jobs_here", [])
    assert setup_time.job_started("") >= before  # outside a sweep
