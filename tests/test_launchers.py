"""Other Hydra launchers: jobs in other processes still find their sweep's parent run, and start
processes of their own (data-loader workers) as a job of the basic launcher does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from tests.conftest import ROOT, TINY, run_sweep

pytestmark = pytest.mark.slow

# Two loader worker processes in every CPU training: TINY's 16 images make two batches of 8, and
# ultralytics starts no more workers than batches.
LOADER_WORKERS = ["sweep.cpu_workers=true", "train.workers=2"]
EPOCHS = 4


def runs_of(tracking_uri: str) -> tuple:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_PARENT]
    return parent, [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]


def test_submitit_jobs_log_under_the_sweeps_parent_run(tmp_path: Path, cache_root: Path) -> None:
    """submitit_local runs each job as its own submitit process, exactly as on SLURM minus the queue."""
    sweep = run_sweep(tmp_path, cache_root, ["hydra/launcher=submitit_local", "freeze=0,10", *LOADER_WORKERS])
    assert sweep.result.returncode == 0, sweep.result.stderr[-3000:]
    parent, children = runs_of(sweep.tracking_uri)
    assert sorted(r.info.run_name for r in children) == ["0/23 · yolov8n-demo", "10/23 · yolov8n-demo"]
    assert all(r.data.tags[names.PARENT_RUN_ID] == parent.info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in [parent, *children])
    for job in ("0", "1"):
        assert "Using 2 dataloader workers" in (sweep.sweep_dir / job / "train.log").read_text()


def test_parallel_variants_start_their_data_loader_workers(tmp_path: Path, cache_root: Path) -> None:
    """The path every training takes on a GPU, here on CPU: loader worker processes started inside
    a joblib (loky) worker. loky's start method, left as the worker's default, broke them there
    ("'Process' object has no attribute 'env'") and failed every variant."""
    launcher = ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", "freeze=none,backbone"]
    sweep = run_sweep(tmp_path, cache_root, [*launcher, *LOADER_WORKERS])
    assert sweep.result.returncode == 0, sweep.result.stdout[-3000:] + sweep.result.stderr[-3000:]
    parent, children = runs_of(sweep.tracking_uri)
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in [parent, *children])
    for job in ("0", "1"):
        assert "Using 2 dataloader workers" in (sweep.sweep_dir / job / "train.log").read_text()


def test_a_killed_parallel_sweep_leaves_no_process_and_its_rerun_no_run_running(
    tmp_path: Path, cache_root: Path
) -> None:
    """kill -9 of the launching process while the variants train: its loky workers (and their
    loader workers) end within seconds, the variants KILLED with last.pt kept; the re-run resumes
    them, and closes the dead sweep's parent run, which nothing keeps alive any more."""
    sweep_dir = tmp_path / "outputs" / "multiruns" / "killed"
    args = [*TINY, f"paths.cache_dir={cache_root}/outputs/cache", f"hydra.sweep.dir={sweep_dir}"]
    args += ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", "freeze=none,backbone", *LOADER_WORKERS]
    args += [f"train.epochs={EPOCHS}"]
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(tmp_path)}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "sweep", "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = [sweep_dir / job / "train" / "weights" / "last.pt" for job in ("0", "1")]
    deadline = time.monotonic() + 600
    while not all(c.is_file() for c in checkpoints):  # both variants have trained an epoch
        assert time.monotonic() < deadline and launcher.poll() is None, "the variants never trained an epoch"
        time.sleep(0.5)
    processes = psutil.Process(launcher.pid).children(recursive=True)  # loky's workers and theirs
    launcher.kill()
    launcher.wait()
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert alive == [], f"outlived their sweep: {[' '.join(p.cmdline()[:4]) for p in alive]}"

    parent, variants = runs_of(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    killed = [r for r in variants if r.info.status != "FINISHED"]  # one may have finished before the kill
    assert killed and all(r.info.status == "KILLED" for r in killed)
    assert all("launching process" in r.data.tags[names.CLOSED_REASON] for r in killed)
    assert parent.info.status == "RUNNING"  # until someone sees that its owner is gone

    rerun = subprocess.run(
        [sys.executable, "-m", "sweep", "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("freeze-sweep").experiment_id])
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    assert client.get_run(parent.info.run_id).info.status == "KILLED"
    finished = {
        r.info.run_id for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT and r.info.status == "FINISHED"
    }
    assert finished == {r.info.run_id for r in variants}  # the killed ones resumed in place
