"""`sweep.cpu_threads`: the torch threads of a CPU training, checked before anything trains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sweep.errors import ConfigError
from sweep.training import cpu_threads_callbacks, merged, resolve_cpu_threads, train
from sweep.variant import resolve
from tests.conftest import TINY, compose_config, run_cli


def test_accepted_values() -> None:
    assert resolve_cpu_threads(None) is None
    assert resolve_cpu_threads(3) == 3
    assert resolve_cpu_threads("all") == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", [0, -2, "zero", 1.5, True, [2]])
def test_a_bad_value_is_one_line_naming_it(value: object) -> None:
    with pytest.raises(ConfigError, match=r"sweep\.cpu_threads=.*: use null .*, a positive int, or all"):
        resolve_cpu_threads(value)


def test_a_gpu_training_is_left_alone() -> None:
    assert cpu_threads_callbacks(2, "0") == {} and cpu_threads_callbacks(None, "cpu") == {}


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
def test_a_bad_value_stops_the_sweep_before_any_training(tmp_path: Path) -> None:
    result = run_cli(["-m", *TINY, "sweep.cpu_threads=-1", "freeze=none,backbone"], tmp_path, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("freeze-sweep: error:")]
    assert errors == [
        "freeze-sweep: error: sweep.cpu_threads=-1: use null (ultralytics' choice, cores - 1 up to 8), "
        "a positive int, or all"
    ], result.stderr[-2000:]
    assert not list(tmp_path.glob("outputs/cache/demo-base-*"))  # nothing pretrained, nothing trained


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
def test_the_training_and_its_validations_run_with_the_threads_asked(cache_root: Path, tmp_path: Path) -> None:
    """ultralytics resets torch to cores - 1 threads when it builds the trainer and again for the
    final validation: the count must hold through both."""
    cfg = compose_config(cache_root, ["sweep.cpu_threads=3", "train.epochs=1"])
    spec = resolve(cfg)
    checkpoint = spec.weights_source.ensure("cpu")
    seen: dict[str, list[int]] = {"train": [], "val": []}
    probe = {
        "on_train_batch_end": [lambda _: seen["train"].append(torch.get_num_threads())],
        "on_val_batch_end": [lambda _: seen["val"].append(torch.get_num_threads())],
    }
    before = torch.get_num_threads()
    try:
        callbacks = merged(cpu_threads_callbacks(spec.cpu_threads, "cpu"), probe)
        train(checkpoint, spec.data.yaml, tmp_path / "train", [], {**spec.train_args, "device": "cpu"}, callbacks)
    finally:
        torch.set_num_threads(before)
    assert seen["train"] and set(seen["train"]) == {3}
    assert len(seen["val"]) >= 2 and set(seen["val"]) == {3}  # epoch validation and the final one
