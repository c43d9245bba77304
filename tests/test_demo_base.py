"""The demo base: its cache path is known before it exists, every pretraining argument is in its
key, and a damaged cached file is rebuilt, never reused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sweep.demo.base import base_checkpoint, base_key, ensure_base, is_intact
from sweep.variant import build_variant
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
    assert base_key(compose_config(tmp_path, [override]).model) != base_key(compose_config(tmp_path, []).model)


def test_a_demo_variant_is_resolved_before_its_base_exists(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, [])
    spec = build_variant(cfg)
    assert spec.checkpoint == base_checkpoint(cfg.model, Path(cfg.paths.cache_dir))
    assert not spec.checkpoint.exists()
    before = spec.config_hash()
    ensure_base(cfg.model, Path(cfg.paths.cache_dir), "cpu")
    assert build_variant(cfg).config_hash() == before  # the hash does not move when the base appears
    changed = compose_config(tmp_path, ["model.pretrain.train.lr0=0.02"])
    assert build_variant(changed).config_hash() != before


def test_a_damaged_base_is_rebuilt_not_reused(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, [])
    cache = Path(cfg.paths.cache_dir)
    base = ensure_base(cfg.model, cache, "cpu")
    assert is_intact(base)
    size = base.stat().st_size
    base.write_bytes(os.urandom(size))  # same name, same size: what a name-and-size check would accept
    assert not is_intact(base)
    rebuilt = ensure_base(cfg.model, cache, "cpu")
    assert rebuilt == base and is_intact(rebuilt)
    import torch

    assert torch.load(rebuilt, map_location="cpu", weights_only=False)["model"] is not None
