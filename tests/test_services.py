"""The local services of `.ci/services.sh` do what later tests build on: a SLURM cluster that runs
submitit jobs and requeues them with a catchable SIGTERM, and an MLflow server that stores runs
for an authenticated client only."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
import submitit
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from tests.conftest import run_sweep
from tests.services import SlurmCluster, TrackingServer, job_facts, record_signals_until_requeued

pytest_plugins = ["pytester"]

JOB_TIMEOUT_S = 300


def slurm_executor(cluster: SlurmCluster, folder: Path) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(slurm_partition=cluster.partition, timeout_min=10, cpus_per_task=1, mem_gb=1)
    return executor


def result_within(job: submitit.Job, timeout_s: float = JOB_TIMEOUT_S) -> object:
    """The job's result; fails instead of hanging when the cluster never runs it."""
    deadline = time.monotonic() + timeout_s
    while not job.done():
        assert time.monotonic() < deadline, f"job {job.job_id} not done after {timeout_s} s: {job.state}"
        time.sleep(1)
    return job.result()


def wait_for_line(job: submitit.Job, path: Path, prefix: str, timeout_s: float = JOB_TIMEOUT_S) -> None:
    """Until the running job writes a line starting with `prefix` to `path`."""
    deadline = time.monotonic() + timeout_s
    while not (path.is_file() and any(line.startswith(prefix) for line in path.read_text().splitlines())):
        assert not job.done(), f"job {job.job_id} ended ({job.state}) before writing {prefix!r}: {job.stderr()}"
        assert time.monotonic() < deadline, f"no {prefix!r} line in {path} after {timeout_s} s"
        time.sleep(0.5)


@pytest.mark.slurm
def test_a_submitit_job_on_the_cluster_returns_its_result(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = slurm_executor(slurm_cluster, tmp_path / "submitit").submit(job_facts)
    assert result_within(job) == {
        "SLURM_JOB_ID": job.job_id,
        "SLURM_JOB_PARTITION": slurm_cluster.partition,
        "SUBMITIT_EXECUTOR": "slurm",
    }


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
@pytest.mark.slurm
def test_a_requeued_job_gets_sigterm_and_runs_again(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    log = tmp_path / "signals.log"
    job = slurm_executor(slurm_cluster, tmp_path / "submitit").submit(record_signals_until_requeued, str(log))
    wait_for_line(job, log, "start 0")
    subprocess.run(["scontrol", "requeue", job.job_id], check=True, capture_output=True, text=True)
    assert result_within(job) == 1
    events = [line.split() for line in log.read_text().splitlines()]
    assert [(event, int(restarts)) for event, restarts, _ in events] == [("start", 0), ("SIGTERM", 0), ("start", 1)]


@pytest.mark.server
def test_an_authenticated_client_writes_and_reads_back_a_run(
    tracking_server: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", tracking_server.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", tracking_server.password)
    client = MlflowClient(tracking_server.uri)
    experiment_id = client.create_experiment(f"services-{uuid.uuid4().hex}")
    run_id = client.create_run(experiment_id, run_name="freeze-10").info.run_id
    client.log_param(run_id, "freeze", "10")
    for step, value in enumerate([0.25, 0.5], start=1):
        client.log_metric(run_id, "mAP50", value, step=step)
    report = tmp_path / "report.txt"
    report.write_text("freeze 10: mAP50 0.5\n")
    client.log_artifact(run_id, str(report), artifact_path="report")
    client.set_terminated(run_id)

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    assert run.data.params == {"freeze": "10"}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "mAP50")] == [(1, 0.25), (2, 0.5)]
    downloaded = client.download_artifacts(run_id, "report/report.txt", str(tmp_path / "back"))
    assert Path(downloaded).read_text() == "freeze 10: mAP50 0.5\n"


@pytest.mark.slurm
@pytest.mark.slow
def test_the_slurm_launcher_trains_each_variant_as_a_job_on_a_cpu_only_cluster(
    slurm_cluster: SlurmCluster, tmp_path: Path, cache_root: Path
) -> None:
    """conf/hydra/launcher/slurm.yaml as a user of a cluster without GPUs would override it."""
    launcher = [
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={slurm_cluster.partition}",
        "hydra.launcher.gpus_per_task=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=4",
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.array_parallelism=2",
    ]
    sweep = run_sweep(tmp_path, cache_root, launcher)  # the default sweep: none, backbone, all_but_head
    assert sweep.result.returncode == 0, sweep.result.stdout[-3000:] + sweep.result.stderr[-3000:]
    (submission,) = sweep.sweep_dir.glob(".submitit/*/*_submission.sh")
    sbatch = submission.read_text()
    assert "#SBATCH --gpus-per-task=0" in sbatch and f"#SBATCH --partition={slurm_cluster.partition}" in sbatch
    assert "#SBATCH --array=0-2%2" in sbatch
    assert (sweep.sweep_dir / "report" / "report.html").is_file()
    client = MlflowClient(sweep.tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    variants = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(names.ROLE) == "variant"]
    assert sorted(r.data.params[names.P_FREEZE] for r in variants) == ["all_but_head", "backbone", "none"]
    (parent,) = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(names.ROLE) == "parent"]
    assert all(r.info.status == "FINISHED" for r in [parent, *variants])
    assert {r.data.tags[names.PARENT_RUN_ID] for r in variants} == {parent.info.run_id}


@pytest.mark.server
@pytest.mark.parametrize("password", [None, "wrong-password"], ids=["no-credentials", "wrong-password"])
def test_a_client_without_valid_credentials_is_refused(
    tracking_server: TrackingServer, password: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    if password is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", tracking_server.username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    with pytest.raises(MlflowException) as refused:
        MlflowClient(tracking_server.uri).search_experiments()
    assert "error code 401" in str(refused.value) and "not authenticated" in str(refused.value), str(refused.value)


@pytest.mark.parametrize("fixture", ["tracking_server", "slurm_cluster"])
@pytest.mark.parametrize(("ci", "outcome"), [("", {"skipped": 1}), ("true", {"errors": 1})], ids=["dev", "ci"])
def test_a_missing_service_skips_the_test_but_fails_it_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, fixture: str, ci: str, outcome: dict[str, int]
) -> None:
    monkeypatch.setenv("FREEZE_SWEEP_SERVICES_ENV", str(pytester.path / "no-services.env"))
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(f"def test_needs_it({fixture}):\n    pass\n")
    result = pytester.runpytest("-p", "tests.services", "-rsE")
    result.assert_outcomes(**outcome)
    result.stdout.fnmatch_lines([f"*is not available (no {pytester.path / 'no-services.env'}); start it with*"])
