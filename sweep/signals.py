"""SIGTERM (SLURM preemption and time limits) and SIGINT (Ctrl-C) unwind a sweep like Ctrl-C:
every run on the way ends KILLED with the reason, `last.pt` stays resumable, the exit code says
which signal it was. Light on purpose: the command line installs it before anything heavy loads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM or SIGINT; says why where this process sent it itself."""

    def __init__(self, signum: int, reason: str = "") -> None:
        name = signal.Signals(signum).name
        if _warned:  # SLURM's time limit: submitit gets SIGUSR2 first, then the requeue's SIGTERM
            name += f" after {signal.Signals(_warned[0]).name} (SLURM's time-limit warning)"
        super().__init__(f"{name}: {reason}" if reason else name)
        self.signum = signum


_interrupted: list[int] = []
_reasons: list[str] = []  # why this process signalled itself (`interrupt_self`)
_warned: list[int] = []


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT raise `Interrupted` once in the main thread; the signal is passed on to
    child processes (parallel workers), so they too end their runs KILLED before the exit."""
    if threading.current_thread() is not threading.main_thread():
        return
    _interrupted.clear()
    _reasons.clear()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_signal)
    _note_warning(signal.SIGUSR2)


def _note_warning(signum: int) -> None:
    """Remember a warning signal that a handler already takes (submitit's SIGUSR2 in a SLURM job),
    so the interruption that follows says what caused it; the handler still runs."""
    previous = signal.getsignal(signum)
    if not callable(previous) or getattr(previous, "notes_warning", False):
        return

    def note_then_handle(number: int, frame: object) -> None:
        _warned.append(number)
        previous(number, frame)

    note_then_handle.notes_warning = True
    signal.signal(signum, note_then_handle)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """The handlers above for one variant, then those found before: a launcher's worker that
    waits for its next variant must end on SIGTERM as any idle process does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    install_signal_handlers()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python


def interrupt_self(reason: str) -> None:
    """From any thread: unwind the main thread as SIGTERM would, the runs closed saying `reason`."""
    _reasons.append(reason)
    os.kill(os.getpid(), signal.SIGTERM)


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
    raise Interrupted(signum, _reasons[0] if _reasons else "")


def exit_code(error: KeyboardInterrupt) -> int:
    """128 + the signal number, as a shell reports a process ended by that signal."""
    return 128 + getattr(error, "signum", signal.SIGINT)


def stop_process_group(process: subprocess.Popen, term_grace_s: float = 15.0) -> None:
    """SIGTERM to the whole group, then SIGKILL to whatever of it is left after the grace. The
    leader's exit alone does not mean the group went: a child that ignores SIGTERM, or has not yet
    died of it, outlives a leader that did (a server's workers, a benchmark's joblib workers)."""
    for sig, grace in ((signal.SIGTERM, term_grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process.poll() is not None and not group_alive(process.pid):
                return
            time.sleep(0.05)


def group_alive(group: int) -> bool:
    """Whether a process of the group still runs (a zombie, dead but not yet reaped, does not)."""
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == group and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError):
            continue
    return False
