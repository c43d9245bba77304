"""Run independent jobs on this process and one forked helper: the plots use the second core.

Rendering figures is single-threaded matplotlib work: a third of `freeze-sweep-compare`'s time once
its forward passes are fast, and the largest part of `freeze-sweep-report`'s own work. The figures
are independent files, so two processes draw them side by side, taking the next job from a shared
counter (costliest first). A fork shares what is loaded (models, runs, histories) without pickling
it. Where fork is not available (not Linux), there is one core, or other Python threads run (a
fork copies only the calling thread, and a lock another thread holds would stay held in the
child), the jobs run here one after the other. Either way the same functions write the same files.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence


def run_jobs(jobs: Sequence[Callable[[], object]], processes: int = 2, costs: Sequence[float] | None = None) -> None:
    """Run every job once; raise if any failed, here or in the helper. `costs` (relative, one per
    job) hands out the costliest first, so that the two processes finish together."""
    if costs is not None:
        jobs = [job for _, job in sorted(zip(costs, jobs, strict=True), key=lambda pair: -pair[0])]
    if processes < 2 or len(jobs) < 2 or not _can_fork():
        for job in jobs:
            job()
        return
    context = multiprocessing.get_context("fork")
    counter = context.Value("i", 0)
    helper = context.Process(target=_helper, args=(jobs, counter), daemon=True)
    helper.start()  # multiprocessing flushes stdout and stderr first: nothing is printed twice
    try:
        _take_jobs(jobs, counter)
    finally:
        helper.join()
    if helper.exitcode != 0:
        raise RuntimeError(f"a report job failed in the helper process (exit code {helper.exitcode}); see above")


def _can_fork() -> bool:
    return (
        sys.platform == "linux"
        and (os.cpu_count() or 1) >= 2
        and threading.active_count() == 1
        and "fork" in multiprocessing.get_all_start_methods()
    )


def _take_jobs(jobs: Sequence[Callable[[], object]], counter) -> None:
    while True:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        if index >= len(jobs):
            return
        jobs[index]()


def _helper(jobs: Sequence[Callable[[], object]], counter) -> None:
    """The forked side. One torch thread where torch is loaded, as torch's own forked DataLoader
    workers use: the parent's OpenMP pool does not survive a fork."""
    try:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        _take_jobs(jobs, counter)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
