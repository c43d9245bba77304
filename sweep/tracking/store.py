"""The one door to the MLflow store: `open_experiment` for a sweep that writes (creating the store
and experiment if needed), `connect` for readers (report, UI, compare) that must find an existing
store. One line when it cannot be reached or written, never a half-made one.

MLflow 3.17 corrupts a new SQLite store when two processes create it at the same moment, so a
new SQLite store is created under a file lock; an experiment that another sweep created a moment
earlier is found, not a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock
from mlflow.tracking import MlflowClient

from sweep.errors import ConfigError
from sweep.tracking import names
from sweep.tracking.credentials import redact, without_credentials

VERSIONED_PACKAGES = ("ultralytics", "torch", "mlflow", "hydra-core", "freeze-sweep")
REACH_TIMEOUT_S = 5.0


def default_tracking_uri() -> str:
    """Where the report and compare commands look when not told: MLflow's env var, else the
    store a sweep started in this folder writes to."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'outputs' / 'mlflow.db'}"


def open_experiment(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """Create (or open) the store and the experiment; one line if the store cannot be used.

    With a SQLite store, artifacts go beside the database file: MLflow's default (`./mlruns`)
    would follow whatever the current folder is.
    """
    uri = without_credentials(uri)
    check_reachable(uri)
    database = sqlite_path(uri)
    try:
        if database is None:
            return _open(MlflowClient(tracking_uri=uri), experiment, None)
        database.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(database) + ".lock"):
            return _open(MlflowClient(tracking_uri=uri), experiment, (database.parent / "mlartifacts").as_uri())
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(
            f"tracking.uri={redact(uri)}: the MLflow store cannot be used ({first_line(error)})"
        ) from None


def _open(client: MlflowClient, experiment: str, artifacts: str | None) -> tuple[MlflowClient, str]:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            return client, client.create_experiment(experiment, artifacts)
        except Exception:  # another sweep created it a moment ago
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
    if found.lifecycle_stage != "active":
        raise ConfigError(
            f"tracking.experiment={experiment}: the experiment is deleted in {redact(client.tracking_uri)}; "
            "restore it in the MLflow UI or pick another name"
        )
    return client, found.experiment_id


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return redact(text.splitlines()[0][:400]) if text else type(error).__name__


def check_reachable(uri: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Fail in seconds on a server that is not there (MLflow would retry for minutes)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout_s).close()
    except OSError as error:
        raise ConfigError(
            f"tracking.uri={redact(uri)}: no MLflow server answers at {parsed.hostname}:{port} ({error})"
        ) from None


def sweep_tags(sweep_dir: Path, overrides: list[str]) -> dict[str, str]:
    """What the parent run records about how the sweep was run."""
    tags = {
        names.OVERRIDES: redact(" ".join(overrides)),
        names.SWEEP_DIR: str(sweep_dir),
        **{f"versions.{p}": _version(p) for p in VERSIONED_PACKAGES},
    }
    commit = git_commit()
    if commit:
        tags[names.GIT_COMMIT] = commit
    return tags


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


def sqlite_path(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def connect(tracking_uri: str) -> MlflowClient:
    """A client on an existing store: a missing SQLite file is an error, not a new empty store;
    a server that does not answer is one line within seconds, not minutes of MLflow's retries."""
    tracking_uri = without_credentials(tracking_uri)
    check_reachable(tracking_uri)
    database = sqlite_path(tracking_uri)
    if database is not None and not database.is_file():
        raise ConfigError(
            f"--tracking-uri {redact(tracking_uri)}: no MLflow database at {database}; run `freeze-sweep -m` first "
            "or pass the store the sweep used"
        )
    return MlflowClient(tracking_uri=tracking_uri)
