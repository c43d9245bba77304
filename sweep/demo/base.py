"""The demo's base model: YOLOv8n pretrained on the generated source task.

Its cache path is a function of its recipe alone (`base_checkpoint`: the architecture and the
`model.pretrain` settings, plain values), so a variant that starts from it is fully resolved,
config hash included, before the base exists. It is built on first
use, once (a file lock makes parallel jobs wait for one build), and its content hash is recorded
then and checked before every use: a damaged file is rebuilt, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock

from sweep.checkpoints import file_sha256
from sweep.console import ultralytics_output_to
from sweep.demo.data import DemoDataSpec, ensure_dataset
from sweep.tracking import names
from sweep.training import cpu_threads_callbacks, train

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"  # beside weights/: the content hash recorded when the base was built


def base_key(arch: str, pretrain: Mapping) -> str:
    """Everything the base depends on: architecture, source data and every pretraining argument."""
    blob = json.dumps({"arch": arch, "pretrain": pretrain, "data": _source_spec(pretrain).key()}, sort_keys=True)
    return f"demo-base-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def base_checkpoint(arch: str, pretrain: Mapping, cache_dir: Path) -> Path:
    """Where the base checkpoint is (or will be once built)."""
    return Path(cache_dir) / base_key(arch, pretrain) / "weights" / "best.pt"


def is_intact(checkpoint: Path) -> bool:
    """The file is the one that was built: same content hash as recorded at build time."""
    manifest = checkpoint.parent.parent / MANIFEST
    if not checkpoint.is_file() or not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text())["sha256"] == file_sha256(checkpoint)
    except (ValueError, KeyError, OSError):
        return False


def ensure_base(arch: str, pretrain: Mapping, cache_dir: Path, device: str, cpu_threads: int | None = None) -> Path:
    """Path of the intact cached base checkpoint, pretraining it first if needed."""
    final = base_checkpoint(arch, pretrain, cache_dir)
    if is_intact(final):
        return final
    folder = final.parent.parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.with_suffix(".lock"))):
        if is_intact(final):
            return final
        if folder.exists():
            log.warning("The cached demo base %s is damaged (content hash differs); rebuilding it", final)
            shutil.rmtree(folder)
        _build(arch, pretrain, Path(cache_dir), folder, device, cpu_threads)
    return final


def _build(arch: str, pretrain: Mapping, cache_dir: Path, folder: Path, device: str, cpu_threads: int | None) -> None:
    args = dict(pretrain["train"])
    data = ensure_dataset(_source_spec(pretrain), cache_dir)
    building = folder.with_name(f"{folder.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    log.info(
        "Pretraining the demo base (%s, %d epochs on the source task; log: %s, kept in %s once done); "
        "cached for later sweeps",
        arch,
        args["epochs"],
        building / "pretrain.log",
        folder,
    )
    with ultralytics_output_to(building / "pretrain.log", verbose=False):
        threads = cpu_threads_callbacks(cpu_threads, device)
        result = train(arch, data, building, freeze=[], args={**args, "device": device}, callbacks=threads)
    best = building / "weights" / "best.pt"
    (building / MANIFEST).write_text(json.dumps({"sha256": file_sha256(best), "key": folder.name}, indent=2))
    building.rename(folder)
    log.info(
        "Demo base ready: source-task mAP50 %.3f (log: %s)",
        result.metrics.get(names.UL_MAP50, float("nan")),
        folder / "pretrain.log",
    )


def _source_spec(pretrain: Mapping) -> DemoDataSpec:
    d = pretrain["data"]
    return DemoDataSpec("source", d["n_train"], d["n_val"], d["imgsz"], d["seed"])
