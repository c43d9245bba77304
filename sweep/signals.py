"""SIGTERM (SLURM preemption and time limits) and SIGINT (Ctrl-C) unwind a sweep like Ctrl-C:
every run on the way ends KILLED with the reason, `last.pt` stays resumable, the exit code says
which signal it was. Light on purpose: the command line installs it before anything heavy loads.
"""

from __future__ import annotations

import signal
import threading

import psutil


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM or SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_interrupted: list[int] = []


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT raise `Interrupted` once in the main thread; the signal is passed on to
    child processes (parallel workers), so they too end their runs KILLED before the exit."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_signal)


def _on_signal(signum: int, _frame: object) -> None:
    if _interrupted:  # one unwinding at a time: a second signal must not cut the cleanup short
        return
    _interrupted.append(signum)
    children = psutil.Process().children()
    for child in children:
        try:
            child.send_signal(signum)
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=20)
    raise Interrupted(signum)


def exit_code(error: KeyboardInterrupt) -> int:
    """128 + the signal number, as a shell reports a process ended by that signal."""
    return 128 + getattr(error, "signum", signal.SIGINT)
