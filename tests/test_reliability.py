"""A sweep never loses finished work: skip, resume after kill -9, refuse bad data, parallel logging."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sweep.errors import ConfigError
from sweep.tracking import names
from sweep.variant import build_variant
from tests.conftest import ROOT, TINY, compose_config, run_sweep

EPOCHS = 6  # long enough that the kill lands mid-training


def variant_runs(tracking_uri: str) -> list:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]


@pytest.mark.slow
def test_kill_9_mid_variant_then_rerun_resumes_and_skips(tmp_path: Path, cache_root: Path) -> None:
    overrides = [*TINY, f"train.epochs={EPOCHS}", f"paths.cache_dir={cache_root}/outputs/cache"]
    first_dir = tmp_path / "outputs" / "multiruns" / "first"
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sweep", "-m", *overrides, f"hydra.sweep.dir={first_dir}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    results = first_dir / "1" / "train" / "results.csv"  # the second variant, mid-training
    last = results.parent / "weights" / "last.pt"
    deadline, size = time.monotonic() + 300, -1
    while time.monotonic() < deadline:  # kill once epoch 1's last.pt is completely written
        if last.is_file() and last.stat().st_size == size and len(results.read_text().splitlines()) == 2:
            break
        size = last.stat().st_size if last.is_file() else -1
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert results.is_file(), "the sweep never reached the second variant"
    killed = {r.info.run_name: r.info.status for r in variant_runs(f"sqlite:///{tmp_path}/outputs/mlflow.db")}
    assert killed["none 0/23 · yolov8n-demo"] == "FINISHED" and killed["backbone 10/23 · yolov8n-demo"] == "RUNNING"

    second = run_sweep(tmp_path, cache_root, [f"train.epochs={EPOCHS}"], name="second")
    assert second.result.returncode == 0, second.result.stderr[-3000:]
    output = second.result.stdout + second.result.stderr
    assert "Skipping none 0/23 · yolov8n-demo" in output
    assert "Resuming backbone 10/23 · yolov8n-demo" in output

    client = MlflowClient(second.tracking_uri)
    finished = [r for r in variant_runs(second.tracking_uri) if r.info.status == "FINISHED"]
    assert sorted(r.info.run_name for r in finished) == [
        "all_but_head 22/23 · yolov8n-demo",
        "backbone 10/23 · yolov8n-demo",
        "none 0/23 · yolov8n-demo",
    ]
    assert len({r.data.tags[names.CONFIG_HASH] for r in finished}) == 3
    report = pd.read_csv(second.sweep_dir / "report" / "report.csv")  # the reused run is in it too
    assert sorted(report["frozen_layers"]) == [0, 10, 22]
    for run in finished:
        for key in ("mAP50", "train/box_loss", names.EPOCH_TIME):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == list(range(1, EPOCHS + 1)), (run.info.run_name, key, steps)


@pytest.mark.slow
def test_rerun_true_retrains_instead_of_skipping(tiny_sweep, cache_root: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_sweep.root / "outputs", tmp_path / "outputs", ignore=shutil.ignore_patterns("multiruns"))
    again = run_sweep(tmp_path, cache_root, ["freeze=none", "sweep.rerun=true"], name="again")
    assert again.result.returncode == 0, again.result.stderr[-2000:]
    runs = [r for r in variant_runs(again.tracking_uri) if r.info.run_name == "none 0/23 · yolov8n-demo"]
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.slow
def test_parallel_jobs_lose_no_metric_point(tmp_path: Path, cache_root: Path) -> None:
    sweep = run_sweep(
        tmp_path, cache_root, ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=4", "freeze=0,3,6,9"]
    )
    output = sweep.result.stdout + sweep.result.stderr
    assert sweep.result.returncode == 0, output[-3000:]
    assert "database is locked" not in output
    client = MlflowClient(sweep.tracking_uri)
    runs = variant_runs(sweep.tracking_uri)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        for key in (*names.EPOCH_METRICS, *names.TRAIN_LOSSES, names.EPOCH_TIME):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key


@pytest.fixture
def dataset(tmp_path: Path, cache_root: Path) -> Path:
    """A copy of the tiny demo target dataset that a test may break."""
    build_variant(compose_config(cache_root, []))  # generates the tiny data in the cache
    (source,) = (cache_root / "outputs" / "cache").glob("demo-target-*")
    copy = tmp_path / "data"
    shutil.copytree(source, copy)
    text = (copy / "data.yaml").read_text().replace(f"path: {source}", f"path: {copy}")
    (copy / "data.yaml").write_text(text)
    return copy


def first_label(dataset: Path) -> Path:
    return sorted((dataset / "labels" / "train").glob("*.txt"))[0]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: first_label(d).write_text("7 0.5 0.5 0.2 0.2\n"), "has class id 7, outside the dataset's 3 classes"),
        (lambda d: first_label(d).write_text("0 1.5 0.5 0.2 0.2\n"), "has coordinates outside [0, 1]"),
        (lambda d: sorted((d / "images" / "val").glob("*.png"))[3].write_bytes(b"\x89PNG\r\n broken"), "corrupt image"),
        (lambda d: [p.unlink() for p in (d / "images" / "val").glob("*.png")], "the val split has no images"),
        (lambda d: (d / "data.yaml").write_text("train: images/train\nnames: [a, b]\n"), "'val:' key missing"),
        (lambda d: (d / "data.yaml").write_text("train: [unclosed\n"), "data=demo"),
        (lambda d: (d / "data.yaml").unlink(), "data=demo"),
    ],
    ids=["class-id", "coordinates", "corrupt-image", "empty-split", "no-val-key", "malformed-yaml", "missing-yaml"],
)
def test_broken_datasets_are_refused_naming_the_problem(
    dataset: Path, cache_root: Path, breakage, message: str
) -> None:
    breakage(dataset)
    with pytest.raises(ConfigError) as error:
        build_variant(compose_config(cache_root, [f"data.yaml={dataset / 'data.yaml'}"]))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unreachable_tracking_server_stops_the_sweep_before_any_run(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    result = run_cli(["-m", *TINY, "tracking.uri=http://127.0.0.1:9"], tmp_path, timeout=120)
    assert result.returncode == 2
    assert "tracking.uri=http://127.0.0.1:9: no MLflow server answers at 127.0.0.1:9" in result.stderr
    assert not list(tmp_path.glob("outputs/cache/demo-base-*"))
