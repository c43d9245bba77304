"""Shared fixtures: a shrunken demo config and one real tiny sweep through the CLI."""

from __future__ import annotations

import os
import tempfile

# Before anything imports ultralytics (test modules are collected after this file): never
# download, never touch the user's ultralytics settings.
os.environ["YOLO_OFFLINE"] = "true"
os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="freeze-sweep-tests-yolo-")

import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from sweep.cli import CONF_DIR  # noqa: E402

pytest_plugins = ["tests.services"]  # fixtures tracking_server, slurm_cluster (make services)

ROOT = Path(__file__).resolve().parent.parent

# Tiny but real (conf/experiment/tiny.yaml): a 1-epoch demo base, 2 epochs per variant at 64 px.
TINY = ["experiment=tiny"]


def compose_config(root: Path, overrides: list[str], shrink: bool = True) -> DictConfig:
    """The real composed config, as a job would see it, with outputs under `root`."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=[f"paths.root_dir={root}", *(TINY if shrink else []), *overrides])


def run_cli(
    args: list[str], root: Path, module: str = "sweep", timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run a freeze-sweep command as a user would, with its outputs under `root`."""
    full_env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root), "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
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


def run_sweep(root: Path, cache_root: Path, overrides: list[str], name: str = "sweep", **kwargs) -> Sweep:
    """A tiny multirun with its own store under `root`, sharing the demo cache of `cache_root`."""
    sweep_dir = root / "outputs" / "multiruns" / name
    cache = f"paths.cache_dir={cache_root}/outputs/cache"
    result = run_cli(["-m", *TINY, cache, f"hydra.sweep.dir={sweep_dir}", *overrides], root, **kwargs)
    return Sweep(root, sweep_dir, f"sqlite:///{root}/outputs/mlflow.db", result)


@pytest.fixture(scope="session")
def tiny_sweep(cache_root: Path) -> Sweep:
    """The default sweep (none, backbone, all_but_head) on the shrunken demo, through the CLI."""
    sweep = run_sweep(cache_root, cache_root, [], name="tiny")
    assert sweep.result.returncode == 0, sweep.result.stdout[-3000:] + sweep.result.stderr[-3000:]
    return sweep
