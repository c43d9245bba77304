"""The MLflow store and the sweep's parent run, set up once in the launching process.

MLflow 3.17 corrupts a new SQLite store when parallel jobs create it at the same moment, so the
store and the experiment are created here, before any job starts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlparse

from mlflow.tracking import MlflowClient

from sweep.errors import ConfigError
from sweep.tracking import names
from sweep.tracking.sweeps import sqlite_path, sweep_of_parent, variant_runs

SWEEP_FILE = "sweep.json"  # in the sweep folder: tells jobs (any launcher) their parent run
VERSIONED_PACKAGES = ("ultralytics", "torch", "mlflow", "hydra-core", "freeze-sweep")


def default_tracking_uri() -> str:
    """Where the report and compare commands look when not told: MLflow's env var, else the
    store a sweep started in this folder writes to."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'outputs' / 'mlflow.db'}"


def open_experiment(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """Create (or open) the store and the experiment; one line if the store cannot be reached.

    With a SQLite store, artifacts go beside the database file: MLflow's default (`./mlruns`)
    would follow whatever the current folder is.
    """
    check_reachable(uri)
    artifacts = None
    database = sqlite_path(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        artifacts = (database.parent / "mlartifacts").as_uri()
    client = MlflowClient(tracking_uri=uri)
    try:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment, artifacts)
    except Exception as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ConfigError(f"tracking.uri={uri}: the MLflow store cannot be reached ({reason})") from None
    return client, experiment_id


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds on a tracking server that is not there (MLflow would retry for minutes)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout_s).close()
    except OSError as error:
        raise ConfigError(
            f"tracking.uri={uri}: no MLflow server answers at {parsed.hostname}:{port} ({error})"
        ) from None


def start_parent_run(
    client: MlflowClient, experiment_id: str, sweep_id: str, sweep_dir: Path, overrides: list[str]
) -> str:
    tags = {
        names.SWEEP_ID: sweep_id,
        names.ROLE: names.ROLE_PARENT,
        names.OVERRIDES: " ".join(overrides),
        names.SWEEP_DIR: str(sweep_dir),
        **{f"versions.{p}": _version(p) for p in VERSIONED_PACKAGES},
    }
    commit = git_commit()
    if commit:
        tags[names.GIT_COMMIT] = commit
    run = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}", tags=tags)
    return run.info.run_id


def write_sweep_file(sweep_dir: Path, uri: str, experiment_id: str, sweep_id: str, parent_run_id: str) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    info = {"tracking_uri": uri, "experiment_id": experiment_id, "sweep_id": sweep_id, "parent_run_id": parent_run_id}
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(info, indent=2))


def read_sweep_file(sweep_dir: Path) -> dict | None:
    path = Path(sweep_dir) / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else None


def finish_parent_run(client: MlflowClient, parent_run_id: str, jobs_failed: bool) -> None:
    """End the parent run FAILED if a job failed (even before its variant run existed) or a
    variant run of the sweep did not finish, else FINISHED."""
    runs = variant_runs(client, sweep_of_parent(client, parent_run_id))
    failed = jobs_failed or any(run.info.status != "FINISHED" for run in runs)
    client.set_terminated(parent_run_id, "FAILED" if failed else "FINISHED")


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
