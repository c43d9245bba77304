"""`sweep.forked_jobs.run_jobs`: independent jobs on this process and one forked helper, or here alone.

Each case runs in a fresh interpreter: whether a fork is safe depends on the process's threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOBS = """
import os, sys, threading, time
from functools import partial
from pathlib import Path
from sweep.forked_jobs import run_jobs

out = Path(sys.argv[1])

def job(i):
    time.sleep(0.2)  # long enough that the helper takes some of the jobs
    (out / f"{i}.pid").write_text(str(os.getpid()))
"""


def run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = textwrap.dedent(JOBS) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def pids(tmp_path: Path) -> dict[int, int]:
    return {int(p.stem): int(p.read_text()) for p in tmp_path.glob("*.pid")}


@pytest.mark.skipif(sys.platform != "linux" or (os.cpu_count() or 1) < 2, reason="forks on Linux with 2+ cores")
def test_a_single_threaded_process_shares_the_jobs_with_a_forked_helper(tmp_path: Path) -> None:
    done = run("run_jobs([partial(job, i) for i in range(6)]); print(os.getpid())", tmp_path)
    assert done.returncode == 0, done.stderr
    by_job = pids(tmp_path)
    assert sorted(by_job) == list(range(6))  # every job once
    parent = int(done.stdout.split()[-1])
    assert parent in by_job.values() and len(set(by_job.values())) == 2  # here and in one helper


def test_with_another_thread_running_every_job_runs_here(tmp_path: Path) -> None:
    """A fork copies only the calling thread: a lock held by another one would stay held in the child."""
    code = """
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
    run_jobs([partial(job, i) for i in range(4)])
    stop.set()
    print(os.getpid())
    """
    done = run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert set(pids(tmp_path).values()) == {int(done.stdout.split()[-1])}
    assert sorted(pids(tmp_path)) == list(range(4))


@pytest.mark.skipif(sys.platform != "linux" or (os.cpu_count() or 1) < 2, reason="forks on Linux with 2+ cores")
def test_a_job_failing_in_the_helper_fails_the_call(tmp_path: Path) -> None:
    code = """
    def failing():
        if os.getpid() != parent:
            raise ValueError("drawing failed in the helper")
        time.sleep(1)  # the helper takes the failing job meanwhile

    parent = os.getpid()
    run_jobs([failing, failing])
    """
    done = run(code, tmp_path)
    assert done.returncode != 0
    assert "ValueError: drawing failed in the helper" in done.stderr
    assert "RuntimeError: a report job failed in the helper process (exit code 1)" in done.stderr


def test_costs_hand_out_the_costliest_jobs_first() -> None:
    from sweep.forked_jobs import run_jobs

    order: list[str] = []
    jobs = [lambda name=name: order.append(name) for name in ("cheap", "dear", "middling", "unpriced")]
    run_jobs(jobs, processes=1, costs=[1, 4, 2, 1])
    assert order == ["dear", "middling", "cheap", "unpriced"]  # ties keep their given order
