"""Shared fixtures: a shrunken demo config and one real tiny sweep through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tiny but real: the demo base is pretrained for 1 epoch, every variant trains 2 epochs at 64 px.
TINY = [
    "model.pretrain.epochs=1",
    "model.pretrain.n_train=16",
    "model.pretrain.n_val=8",
    "model.pretrain.imgsz=64",
    "model.pretrain.batch=8",
    "data.n_train=16",
    "data.n_val=8",
    "data.imgsz=64",
    "train.epochs=2",
    "train.imgsz=64",
    "train.batch=8",
    "train.workers=0",
    "train.device=cpu",
    "tracking.gpu_sample_interval_s=0.5",
]


@pytest.fixture(scope="session", autouse=True)
def offline_ultralytics(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never download, never touch the user's ultralytics settings."""
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("yolo-config"))


def run_cli(args: list[str], root: Path, module: str = "sweep", timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a freeze-sweep command as a user would, with its outputs under `root`."""
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@dataclass(frozen=True)
class Sweep:
    root: Path
    sweep_dir: Path
    tracking_uri: str
    result: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project root whose outputs/cache (tiny demo data and base) all sweeps share."""
    return tmp_path_factory.mktemp("project")


@pytest.fixture(scope="session")
def tiny_sweep(cache_root: Path) -> Sweep:
    """The default sweep (none, backbone, all_but_head) on the shrunken demo, through the CLI."""
    sweep_dir = cache_root / "outputs" / "multiruns" / "tiny"
    result = run_cli(["-m", *TINY, f"hydra.sweep.dir={sweep_dir}"], cache_root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Sweep(cache_root, sweep_dir, f"sqlite:///{cache_root}/outputs/mlflow.db", result)
