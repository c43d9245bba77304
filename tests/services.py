"""Fixtures for tests that need the real services started by `.ci/services.sh`: an MLflow tracking
server (PostgreSQL backend, basic auth) and a single-node SLURM cluster.

A test that asks for a service that is not running is skipped on a developer's machine; under CI
(the CI environment variable set) it fails instead, so that CI never passes by skipping them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

DEFAULT_ENV_FILE = "/var/lib/freeze-sweep-services/services.env"
START_HINT = "start it with `sudo make services` (or .ci/services.sh)"


@dataclass(frozen=True)
class TrackingServer:
    uri: str
    username: str
    password: str


@dataclass(frozen=True)
class SlurmCluster:
    partition: str


def env_file() -> Path:
    """Where services.sh wrote the URI, credentials and partition (FREEZE_SWEEP_SERVICES_ENV overrides)."""
    return Path(os.environ.get("FREEZE_SWEEP_SERVICES_ENV", DEFAULT_ENV_FILE))


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(what: str, why: str) -> NoReturn:
    """Skip, or under CI fail: a missing service there is a broken CI machine, not a reason to skip."""
    message = f"{what} is not available ({why}); {START_HINT}"
    if under_ci():
        pytest.fail(f"{message} (CI is set: tests that need it must run, not skip)", pytrace=False)
    pytest.skip(message)


def read_settings(what: str) -> dict[str, str]:
    path = env_file()
    if not path.is_file():
        unavailable(what, f"no {path}")
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.fixture(scope="session")
def tracking_server() -> TrackingServer:
    """The MLflow server's URI and its admin's credentials; the server answers when the test starts."""
    settings = read_settings("MLflow tracking server")
    server = TrackingServer(
        settings["FREEZE_SWEEP_TRACKING_URI"],
        settings["FREEZE_SWEEP_TRACKING_USERNAME"],
        settings["FREEZE_SWEEP_TRACKING_PASSWORD"],
    )
    try:
        with urllib.request.urlopen(f"{server.uri}/health", timeout=10) as response:
            response.read()
    except OSError as error:
        unavailable("MLflow tracking server", f"{server.uri}/health: {error}")
    return server


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The partition to submit to; slurmctld answers and the partition has a node ready for jobs."""
    settings = read_settings("SLURM cluster")
    cluster = SlurmCluster(settings["FREEZE_SWEEP_SLURM_PARTITION"])
    if shutil.which("sbatch") is None:
        unavailable("SLURM cluster", "no sbatch on PATH")
    states = subprocess.run(
        ["sinfo", "--noheader", "--partition", cluster.partition, "--format", "%a %t"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    ready = {"up idle", "up mix", "up alloc"}
    if states.returncode != 0 or not ready & set(states.stdout.splitlines()):
        unavailable("SLURM cluster", f"partition {cluster.partition}: {(states.stdout + states.stderr).strip()!r}")
    return cluster


# Functions run as SLURM jobs. submitit pickles them by reference, so they live in a module the job
# can import (tests.services, from the repository root); pytest imports test modules under other names.


def job_facts() -> dict[str, str]:
    """What the job sees of SLURM."""
    return {key: os.environ.get(key, "") for key in ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "SUBMITIT_EXECUTOR")}


def record_signals_until_requeued(log: str) -> int:
    """The first run waits to be killed, noting the SIGTERM it gets; the run after a requeue returns
    its restart count. Every line written to `log`: event, restart count, time."""
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))

    def note(event: str) -> None:
        with open(log, "a") as file:
            file.write(f"{event} {restarts} {time.time():.3f}\n")

    signal.signal(signal.SIGTERM, lambda signum, frame: note("SIGTERM"))
    note("start")
    while restarts == 0:
        time.sleep(0.1)
    return restarts
