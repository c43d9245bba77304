"""The demo's base model: YOLOv8n pretrained on the generated source task.

Built on first use and cached under the cache folder keyed by its config, so later sweeps (and
every variant of a sweep) reuse it. A file lock lets parallel jobs wait for one build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from sweep.demo.data import DemoDataSpec, ensure_dataset
from sweep.training import train

log = logging.getLogger(__name__)


def base_key(model_cfg: DictConfig) -> str:
    pretrain = OmegaConf.to_container(model_cfg.pretrain, resolve=True)
    blob = json.dumps(
        {"arch": model_cfg.arch, "pretrain": pretrain, "data": _source_spec(model_cfg).key()}, sort_keys=True
    )
    return f"demo-base-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def ensure_base(model_cfg: DictConfig, cache_dir: Path, device: str) -> Path:
    """Path of the cached base checkpoint, pretraining it first if it is not there yet."""
    cache_dir, key = Path(cache_dir), base_key(model_cfg)
    final = cache_dir / key / "weights" / "best.pt"
    if final.exists():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"{key}.lock")):
        if final.exists():
            return final
        p = model_cfg.pretrain
        data = ensure_dataset(_source_spec(model_cfg), cache_dir)
        log.info(
            "Pretraining the demo base (%s, %d epochs on the source task); cached for later sweeps",
            model_cfg.arch,
            p.epochs,
        )
        building = cache_dir / f"{key}.building"
        shutil.rmtree(building, ignore_errors=True)
        result = train(
            model_cfg.arch,
            data,
            building,
            freeze=[],
            args=dict(
                epochs=p.epochs,
                imgsz=p.imgsz,
                batch=p.batch,
                seed=p.seed,
                device=device,
                optimizer="SGD",
                lr0=0.01,
                warmup_epochs=1.0,
                nbs=p.batch,
                deterministic=True,
                val=False,
                plots=False,
                workers=2,
            ),
        )
        log.info("Demo base ready: source-task mAP50 %.3f", result.metrics.get("metrics/mAP50(B)", float("nan")))
        building.rename(final.parent.parent)
    return final


def _source_spec(model_cfg: DictConfig) -> DemoDataSpec:
    p = model_cfg.pretrain
    return DemoDataSpec("source", p.n_train, p.n_val, p.imgsz, p.seed)
