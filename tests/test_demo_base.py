"""The demo base: its cache path is known before it exists, every pretraining argument is in its
key, and a damaged cached file is rebuilt, never reused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sweep.demo.base import is_intact
from sweep.demo.source import DemoBase
from sweep.variant import plain, resolve
from tests.conftest import compose_config


@pytest.mark.parametrize(
    "override",
    [
        "model.pretrain.train.lr0=0.02",
        "model.pretrain.train.optimizer=AdamW",
        "model.pretrain.train.workers=1",
        "model.pretrain.train.epochs=2",
        "model.pretrain.data.n_train=32",
        "model.arch=yolov8s.yaml",
    ],
)
def test_every_pretraining_argument_enters_the_cache_key(tmp_path: Path, override: str) -> None:
    def key(overrides: list[str]) -> str:
        return DemoBase.from_config(plain(compose_config(tmp_path, overrides).model), tmp_path).identity()

    assert key([override]) != key([])


def test_a_demo_variant_is_resolved_before_its_base_exists(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, [])
    spec = resolve(cfg)
    assert spec.checkpoint.parent.parent.parent == Path(cfg.paths.cache_dir)
    assert not spec.checkpoint.exists()
    before = spec.config_hash()
    assert spec.weights_source.ensure("cpu") == spec.checkpoint
    assert resolve(cfg).config_hash() == before  # the hash does not move when the base appears
    changed = compose_config(tmp_path, ["model.pretrain.train.lr0=0.02"])
    assert resolve(changed).config_hash() != before


def test_a_damaged_base_is_rebuilt_not_reused(tmp_path: Path) -> None:
    source = resolve(compose_config(tmp_path, [])).weights_source
    base = source.ensure("cpu")
    assert is_intact(base)
    size = base.stat().st_size
    base.write_bytes(os.urandom(size))  # same name, same size: what a name-and-size check would accept
    assert not is_intact(base)
    rebuilt = source.ensure("cpu")
    assert rebuilt == base and is_intact(rebuilt)
    import torch

    assert torch.load(rebuilt, map_location="cpu", weights_only=False)["model"] is not None
