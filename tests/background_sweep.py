"""A tiny sweep through the CLI in the background, for tests that act while it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sweep.tracking.job_status import STATUS_FILE
from tests.conftest import ROOT, TINY


class BackgroundSweep:
    """`freeze-sweep -m` as `run_sweep` starts it, without waiting for it."""

    def __init__(self, root: Path, cache_root: Path, overrides: list[str], name: str = "sweep") -> None:
        self.sweep_dir = root / "outputs" / "multiruns" / name
        self.tracking_uri = f"sqlite:///{root}/outputs/mlflow.db"
        cache = f"paths.cache_dir={cache_root}/outputs/cache"
        env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root), "HYDRA_FULL_ERROR": "0"}
        command = [sys.executable, "-m", "sweep", "-m", *TINY, cache, f"hydra.sweep.dir={self.sweep_dir}", *overrides]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def job_started(self, job: int) -> bool:
        return (self.sweep_dir / str(job) / ".hydra").is_dir()

    def job_done(self, job: int) -> bool:
        return (self.sweep_dir / str(job) / STATUS_FILE).is_file()

    def wait_for(self, condition, timeout_s: float = 1800) -> None:  # noqa: ANN001 (a callable)
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.process.poll() is None, f"the sweep ended first:\n{self.process.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, "timed out waiting for the sweep"
            time.sleep(0.2)

    def finish(self, timeout_s: float = 900) -> str:
        """Waits for the sweep's end; returns its console output. Fails on a non-zero exit."""
        output, _ = self.process.communicate(timeout=timeout_s)
        assert self.process.returncode == 0, output[-3000:]
        return output
