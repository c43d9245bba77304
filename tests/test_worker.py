"""The process a variant trains in: it starts processes of its own under any launcher, and it
does not outlive the sweep that started it. Real processes and signals throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from joblib import Parallel, delayed

from sweep.tracking.owners import owner_tag
from sweep.worker import POLL_S, launching_ancestor, variant_process
from tests.conftest import ROOT


def load_with_loader_workers() -> tuple[str | None, int]:
    """What torch's DataLoader does on a GPU: start worker processes with the default start method."""
    import multiprocessing

    from torch.utils.data import DataLoader

    with variant_process(""):
        items = sum(len(batch) for batch in DataLoader(list(range(12)), batch_size=3, num_workers=2))
        return multiprocessing.get_start_method(allow_none=True), items


@pytest.mark.slow  # two loky workers import torch: over 10 s on a busy 2-core machine
def test_loader_workers_start_inside_a_loky_worker() -> None:
    """loky makes its start method the worker's default; a plain Process then failed in loky's
    Popen ("'Process' object has no attribute 'env'")."""
    results = Parallel(n_jobs=2, backend="loky")(delayed(load_with_loader_workers)() for _ in range(2))
    assert [items for _, items in results] == [12, 12]
    assert all(method not in ("loky", "loky_init_main") for method, _ in results)


def test_only_a_process_the_sweep_started_watches_it() -> None:
    me = psutil.Process()
    assert launching_ancestor(owner_tag()) is None  # the launching process itself (basic launcher)
    assert launching_ancestor(owner_tag(me.parent())).pid == me.parent().pid
    assert launching_ancestor(owner_tag(me.parent()).rsplit(":", 1)[0] + ":1") is None  # a reused pid
    assert launching_ancestor("node7:1234:1") is None  # another host (a SLURM job's launcher)


# A worker: one variant (the `variant_process` block) that trains for `TRAIN_S`, or ends at once
# and then idles as a reused launcher worker waits for its next variant.
WORKER = """
import sys, time
from pathlib import Path
from sweep.signals import signals_interrupt
from sweep.worker import variant_process
owner, out, train_s = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
with variant_process(owner), signals_interrupt():
    try:
        out.write_text("training")
        time.sleep(train_s)
        out.write_text("finished")
    except KeyboardInterrupt as error:
        out.write_text(f"killed: {error}")
        raise
time.sleep(120)
"""
# The sweep's launching process: starts the worker with its own owner tag, directly (loky) or
# through a middle process that outlives it (submitit local's controller), then waits.
LAUNCHER = """
import subprocess, sys, time
from sweep.tracking.owners import owner_tag
middle = [sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])"] if sys.argv[4] else []
subprocess.Popen([*middle, sys.executable, "-c", sys.argv[1], owner_tag(), sys.argv[2], sys.argv[3]])
time.sleep(300)
"""


def killed_launcher_leaves_worker(tmp_path: Path, train_s: float, wait_for: str, middle: bool = False) -> str:
    """What the worker wrote once its launching process was killed and it ended (its exit code
    goes to init, which adopted it)."""
    out = tmp_path / "worker.out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [LAUNCHER, WORKER, str(out), str(train_s), "middle" if middle else ""]
    launcher = subprocess.Popen([sys.executable, "-c", *args], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while not (out.is_file() and out.read_text() == wait_for):
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.1)
    (worker,) = [p for p in psutil.Process(launcher.pid).children(recursive=True) if p.cmdline()[1:3] == ["-c", WORKER]]
    launcher.kill()
    launcher.wait()
    started = time.monotonic()
    gone, _ = psutil.wait_procs([worker], timeout=10 * POLL_S + 5)
    assert gone, "the worker outlived its sweep's launching process"
    assert time.monotonic() - started < 10 * POLL_S + 5
    return out.read_text()


@pytest.mark.parametrize("middle", [False, True], ids=["child", "grandchild"])
def test_a_training_worker_ends_its_variant_killed_when_the_launching_process_dies(
    tmp_path: Path, middle: bool
) -> None:
    outcome = killed_launcher_leaves_worker(tmp_path, train_s=120, wait_for="training", middle=middle)
    assert outcome.startswith("killed: SIGTERM: the sweep's launching process") and outcome.endswith("is gone")


def test_an_idle_worker_exits_when_the_launching_process_dies(tmp_path: Path) -> None:
    assert killed_launcher_leaves_worker(tmp_path, train_s=0, wait_for="finished") == "finished"


@pytest.mark.parametrize("train_s", [0, 120])
def test_sigterm_ends_a_worker_whether_training_or_idle(tmp_path: Path, train_s: float) -> None:
    """An idle worker kept the variant's handler, and ignored every SIGTERM after the first."""
    out = tmp_path / "worker.out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, "", str(out), str(train_s)], cwd=ROOT, env=env)
    wait_for = "training" if train_s else "finished"
    deadline = time.monotonic() + 60
    while not (out.is_file() and out.read_text() == wait_for):
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.1)
    time.sleep(0.5)  # past the end of the variant block
    worker.terminate()
    assert worker.wait(timeout=30) != 0
    assert out.read_text() == ("killed: SIGTERM" if train_s else "finished")
