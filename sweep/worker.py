"""The process a variant trains in, made fit for it whatever launcher started it.

- Start methods. loky, the joblib backend of `hydra/launcher=local_parallel`, starts its workers
  with its own start method, and Python makes a process's start method its default for every
  process it starts later. A plain `multiprocessing.Process` started in a loky worker (torch's
  DataLoader workers, a multiprocessing pool in a plotting helper) then goes through loky's Popen,
  which fails: `'Process' object has no attribute 'env'`. The platform's default comes back here.
- Outliving the sweep. The processes a sweep starts on its machine (loky workers, submitit's local
  jobs) are not ended with it: after `kill -9` of the launching process they trained on, then sat
  idle. Each watches the launching process (its ancestor) and, once it is gone, ends its variant
  KILLED (last.pt kept: a re-run resumes it) and exits. A poll, not PR_SET_PDEATHSIG: that signal
  follows the thread that started the process (loky starts workers from a helper thread), and
  never reaches a grandchild such as a submitit local job.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from sweep.signals import interrupt_self
from sweep.tracking.owners import owner_tag
from sweep.tracking.periodic import Periodic

log = logging.getLogger("sweep")

POLL_S = 1.0
UNWIND_S = 60.0  # after the signal, how long the variant may take to end its run before the exit
EXIT_CODE = 128 + signal.SIGTERM


def restore_default_start_method() -> None:
    """The platform's default start method for processes started here, where loky left its own."""
    if multiprocessing.get_start_method(allow_none=True) in ("loky", "loky_init_main"):
        multiprocessing.set_start_method(None, force=True)


def launching_ancestor(owner: str) -> psutil.Process | None:
    """The sweep's launching process (`host:pid:start`, as in the parent run's owner tag) when it
    started this one, directly or not; None in the launching process itself, on another host, and
    under SLURM, whose jobs the cluster owns."""
    try:
        ancestors = psutil.Process().parents()
    except psutil.Error:
        return None
    return next((p for p in ancestors if _safe_tag(p) == owner), None)


def _safe_tag(process: psutil.Process) -> str:
    try:
        return owner_tag(process)
    except psutil.Error:
        return ""


def _alive(process: psutil.Process) -> bool:
    """Killed but not yet reaped by its own parent, a process is a zombie: gone for us."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class _SweepWatch:
    """One per worker process, kept across the variants a reused worker trains."""

    def __init__(self, launcher: psutil.Process) -> None:
        self.launcher = launcher
        self._lock = threading.Lock()
        self._training = False
        self._gone_at: float | None = None
        self._ticker = Periodic(self._check, POLL_S, "freeze-sweep-sweep-watch")
        self._ticker.start()

    def _check(self) -> None:
        if self._gone_at is not None:
            if time.monotonic() - self._gone_at > UNWIND_S:
                _exit(f"the variant did not end within {UNWIND_S:.0f} s of its sweep's end")
            return
        if _alive(self.launcher):
            return
        with self._lock:
            self._gone_at = time.monotonic()
            if not self._training:
                _exit(f"its sweep's launching process {self.launcher.pid} is gone")
        interrupt_self(f"the sweep's launching process {self.launcher.pid} is gone")

    @contextmanager
    def training(self) -> Iterator[None]:
        with self._lock:
            self._training = True
        try:
            yield
        finally:
            with self._lock:
                self._training = False
                if self._gone_at is not None:
                    _exit(f"its sweep's launching process {self.launcher.pid} is gone")


_watch: list[_SweepWatch] = []


@contextmanager
def variant_process(owner: str) -> Iterator[None]:
    """Around one variant in a launcher's worker: processes start as the platform starts them,
    and the worker ends with its sweep (`owner`: the launching process, "" when unknown)."""
    restore_default_start_method()
    launcher = launching_ancestor(owner) if owner else None
    if launcher is None:
        yield
        return
    if not _watch or _watch[0].launcher.pid != launcher.pid:
        _watch[:] = [_SweepWatch(launcher)]
    with _watch[0].training():
        yield


def _exit(why: str) -> None:
    log.warning("Worker %d exits: %s", os.getpid(), why)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(EXIT_CODE)
