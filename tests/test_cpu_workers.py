"""`sweep.cpu_workers`: data-loader worker processes in a CPU training, where ultralytics starts none."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.errors import ConfigError
from sweep.training import cpu_workers_callbacks, merged, resolve_cpu_workers, train
from sweep.variant import resolve
from tests.conftest import compose_config


@pytest.mark.parametrize("value", ["yes", 1, 0, None])
def test_a_bad_value_is_one_line_naming_it(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^sweep\.cpu_workers=.*: use true or false$"):
        resolve_cpu_workers(value)


def test_off_by_default_and_a_gpu_training_is_left_alone(tmp_path: Path) -> None:
    assert resolve(compose_config(tmp_path, [])).cpu_workers is False
    assert cpu_workers_callbacks(True, 4, "0") == {} and cpu_workers_callbacks(False, 4, "cpu") == {}


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
def test_a_cpu_training_loads_its_batches_in_the_workers_asked(cache_root: Path, tmp_path: Path) -> None:
    """Without the setting, ultralytics' CPU trainer builds its loader with 0 workers."""
    cfg = compose_config(cache_root, ["sweep.cpu_workers=true", "train.workers=2", "train.epochs=1"])
    spec = resolve(cfg)
    checkpoint = spec.weights_source.ensure("cpu")
    loaders: list[int] = []

    def worker_count(trainer) -> None:
        loaders.append(trainer.train_loader.num_workers)

    probe = {"on_train_start": [worker_count]}
    callbacks = merged(cpu_workers_callbacks(spec.cpu_workers, 2, "cpu"), probe)
    train(checkpoint, spec.data.yaml, tmp_path / "train", [], spec.train_args, callbacks)
    assert loaders == [2]
    log = (tmp_path / "train" / "results.csv").read_text().splitlines()
    assert len(log) == 2  # the epoch trained
