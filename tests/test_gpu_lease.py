"""GPU leases between real worker processes, with the GPU count faked (no GPU on this machine)."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import torch

from sweep.errors import ConfigError
from sweep.gpu_lease import lease_gpu

HOLD_S = 0.6


def worker(lock_dir: Path, results) -> None:
    """A variant: lease a GPU, 'train' on it, report when it held which."""
    with lease_gpu(lock_dir, per_gpu=1, poll_s=0.05) as gpu:
        start = time.monotonic()
        time.sleep(HOLD_S)
        results.put((gpu, start, time.monotonic()))


def test_four_workers_on_two_gpus_never_share_one_and_the_rest_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # forked workers inherit the fake
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=worker, args=(tmp_path, results)) for _ in range(4)]
    for w in workers:
        w.start()
    held = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert all(w.exitcode == 0 for w in workers)
    assert sorted({gpu for gpu, _, _ in held}) == [0, 1]
    for gpu in (0, 1):  # 4 variants, 2 GPUs, no GPU shared at once: later holders waited for earlier ones
        spans = sorted((start, end) for g, start, end in held if g == gpu)
        assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), held


def test_a_killed_holder_frees_its_gpu(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    holding = context.Event()

    def hold_forever() -> None:
        with lease_gpu(tmp_path, count=1):
            holding.set()
            time.sleep(600)

    holder = context.Process(target=hold_forever)
    holder.start()
    assert holding.wait(60)
    assert (tmp_path / "gpu0.slot0.lock").read_text() == f"{holder.pid}\n"
    got = threading.Event()
    waiter = threading.Thread(target=lambda: _lease_and_set(tmp_path, got), daemon=True)
    waiter.start()
    assert not got.wait(1.0)  # held by a live process: the waiter waits
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=30)
    assert got.wait(10)  # the OS dropped the dead holder's lock


def _lease_and_set(lock_dir: Path, got: threading.Event) -> None:
    with lease_gpu(lock_dir, count=1, poll_s=0.05):
        got.set()


def test_waiting_is_logged_and_a_released_gpu_is_taken(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sweep.gpu_lease")
    got: list[int] = []
    with lease_gpu(tmp_path, count=1) as first:
        waiter = threading.Thread(target=lambda: got.extend(_lease_once(tmp_path)))
        waiter.start()
        time.sleep(0.5)
        assert not got
    waiter.join(timeout=10)
    assert first == 0 and got == [0]
    assert "All 1 GPU(s) hold 1 variant(s) each: waiting for one to finish" in caplog.messages


def _lease_once(lock_dir: Path) -> list[int]:
    with lease_gpu(lock_dir, count=1, poll_s=0.05) as gpu:
        return [gpu]


def test_several_variants_per_gpu_spread_before_they_pack(tmp_path: Path) -> None:
    with ExitStack() as stack:
        gpus = [stack.enter_context(lease_gpu(tmp_path, count=2, per_gpu=2)) for _ in range(4)]
        assert gpus == [0, 1, 0, 1]
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "gpu0.slot0.lock",
            "gpu0.slot1.lock",
            "gpu1.slot0.lock",
            "gpu1.slot1.lock",
        ]


def test_locks_are_named_by_the_physical_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweeps that see different GPUs as torch index 0 must not block each other."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with lease_gpu(tmp_path, count=1) as gpu:
        assert gpu == 0 and (tmp_path / "gpu3.slot0.lock").is_file()


@pytest.mark.parametrize(
    ("count", "per_gpu", "message"),
    [
        (0, 1, "a GPU lease needs a CUDA GPU, and torch sees 0: use train.device=cpu"),
        (2, 0, "variants per GPU=0: accepted is a whole number >= 1"),
        (2, 1.5, "variants per GPU=1.5: accepted is a whole number >= 1"),
    ],
)
def test_bad_settings_are_one_line(tmp_path: Path, count: int, per_gpu, message: str) -> None:
    with pytest.raises(ConfigError) as error, lease_gpu(tmp_path, count=count, per_gpu=per_gpu):
        pass
    assert str(error.value) == message
