"""Sweeps on the real engines of `make services`: SLURM preemption, and a shared MLflow server
with basic auth (credentials never written), two sweeps on it training each variant once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from tests.conftest import ROOT, TINY, run_sweep
from tests.services import SlurmCluster, TrackingServer

pytestmark = pytest.mark.slow
EPOCHS = 4


def slurm_launcher(cluster: SlurmCluster) -> list[str]:
    return [
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={cluster.partition}",
        "hydra.launcher.gpus_per_task=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=4",
        "hydra.launcher.timeout_min=30",
    ]


@pytest.mark.slurm
def test_a_preempted_variant_is_killed_resumable_and_resumed_by_its_requeued_job(
    slurm_cluster: SlurmCluster, tmp_path: Path, cache_root: Path
) -> None:
    sweep_dir = tmp_path / "outputs" / "multiruns" / "preempted"
    args = [*TINY, f"paths.cache_dir={cache_root}/outputs/cache", f"hydra.sweep.dir={sweep_dir}"]
    args += [*slurm_launcher(slurm_cluster), "freeze=backbone", f"train.epochs={EPOCHS}"]
    args += ["data.n_train=160"]  # epochs of seconds, not of 0.6 s: the requeue must land mid-training
    process = subprocess.Popen(
        [sys.executable, "-m", "sweep", "-m", *args],
        cwd=ROOT,
        env={**os.environ, "FREEZE_SWEEP_ROOT": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    results = sweep_dir / "0" / "train" / "results.csv"
    last = results.parent / "weights" / "last.pt"  # written after results.csv: wait for both
    deadline, size = time.monotonic() + 600, -1
    while not (
        results.is_file()
        and len(results.read_text().splitlines()) >= 2
        and last.is_file()
        and last.stat().st_size == size
    ):
        if process.poll() is not None:  # the sweep ended before its job trained an epoch: say why
            pytest.fail(f"the sweep exited {process.returncode} before an epoch:\n{process.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, "the job never finished an epoch"
        size = last.stat().st_size if last.is_file() else -1
        time.sleep(0.5)
    epochs_done = len(results.read_text().splitlines()) - 1
    assert epochs_done < EPOCHS, f"training ended ({epochs_done} epochs) before the requeue: make its epochs slower"
    queue = subprocess.run(["squeue", "--noheader", "--format=%i %o"], capture_output=True, text=True).stdout
    # This sweep's own jobs only (their batch scripts lie in its folder): never another test's or user's.
    job_ids = [line.split()[0] for line in queue.splitlines() if str(sweep_dir) in line]
    assert job_ids, queue
    for job_id in job_ids:  # what preemption does: SIGTERM now, the job back in the queue
        subprocess.run(["scontrol", "requeue", job_id], check=True)
    output = process.communicate(timeout=900)[0]
    assert process.returncode == 0, output[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = client.search_runs([experiment.experiment_id], f"tags.`{names.ROLE}` = 'variant'")
    (run,) = [r for r in runs if names.SUPERSEDED_BY not in r.data.tags]  # killed, then resumed in place
    assert run.info.status == "FINISHED"
    assert "SIGTERM" in run.data.tags[names.RESUMED_AFTER]  # the first attempt ended KILLED by the preemption
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "mAP50")]
    assert steps == list(range(1, EPOCHS + 1))
    log = (sweep_dir / "0" / "freeze-sweep.log").read_text()
    assert "Resuming backbone 10/23" in log


def authenticated(server: TrackingServer, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """A client of this test process, with MLflow's own credential variables."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
    return MlflowClient(server.uri)


@pytest.mark.server
def test_a_sweep_against_the_shared_server_is_read_back_and_its_credentials_written_nowhere(
    tracking_server: TrackingServer, tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)  # the sweep gets them only in the URI
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    experiment = f"server-{uuid.uuid4().hex[:8]}"  # the server outlives test sessions
    scheme, rest = tracking_server.uri.split("://", 1)
    with_credentials = f"{scheme}://{tracking_server.username}:{tracking_server.password}@{rest}"
    sweep = run_sweep(
        tmp_path,
        cache_root,
        [f"tracking.uri={with_credentials}", f"tracking.experiment={experiment}", "freeze=none,backbone"],
    )
    output = sweep.result.stdout + sweep.result.stderr
    assert sweep.result.returncode == 0, output[-3000:]
    assert tracking_server.password not in output

    client = authenticated(tracking_server, monkeypatch)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    variants = [r for r in runs if r.data.tags.get(names.ROLE) == "variant"]
    (parent,) = [r for r in runs if r.data.tags.get(names.ROLE) == "parent"]
    assert len(variants) == 2 and all(r.info.status == "FINISHED" for r in [parent, *variants])
    artifacts = {a.path for a in client.list_artifacts(variants[0].info.run_id, "weights")}
    assert artifacts == {"weights/best.pt"}
    assert client.download_artifacts(variants[0].info.run_id, "weights/best.pt", str(tmp_path / "dl"))
    assert "report/report.html" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    for run in runs:  # tags and params
        text = str(run.data.tags) + str(run.data.params)
        assert tracking_server.password not in text
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and tracking_server.password.encode() in p.read_bytes()]
    assert leaked == []  # Hydra's configs, overrides, sweep.json, reports, logs


@pytest.mark.server
def test_two_sweeps_started_together_against_the_server_train_each_variant_once(
    tracking_server: TrackingServer, tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = f"server-pair-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(tmp_path)}
    env.update(MLFLOW_TRACKING_USERNAME=tracking_server.username, MLFLOW_TRACKING_PASSWORD=tracking_server.password)
    common = [*TINY, f"paths.cache_dir={cache_root}/outputs/cache", f"tracking.uri={tracking_server.uri}"]
    common += [f"tracking.experiment={experiment}", "freeze=none,backbone"]
    pair = [
        subprocess.Popen(
            [sys.executable, "-m", "sweep", "-m", *common, f"hydra.sweep.dir={tmp_path}/outputs/multiruns/{side}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for side in "ab"
    ]
    outputs = [p.communicate(timeout=900)[0] for p in pair]
    assert [p.returncode for p in pair] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    client = authenticated(tracking_server, monkeypatch)
    found = client.get_experiment_by_name(experiment)
    variants = client.search_runs([found.experiment_id], f"tags.`{names.ROLE}` = 'variant'")
    assert sorted(r.data.params[names.P_FREEZE] for r in variants) == ["backbone", "none"]
    assert all(r.info.status == "FINISHED" for r in variants)
