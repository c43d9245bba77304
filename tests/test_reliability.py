"""A sweep never loses finished work: skip, resume after kill -9, refuse bad data, parallel logging."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sweep.errors import ConfigError
from sweep.tracking import names
from sweep.variant import resolve
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
    # generates the tiny data in the cache (where other tests keep other sizes of it)
    source = resolve(compose_config(cache_root, [])).data.yaml.parent
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
        (lambda d: first_label(d).write_text("7 0.5 0.5 0.2 0.2\n"), "Label class 7 exceeds dataset class count 3"),
        (lambda d: first_label(d).write_text("0 1.5 0.5 0.2 0.2\n"), "out of bounds coordinates [1.5]"),
        (
            lambda d: first_label(d).write_text("0 0.5 0.5 0.2 0.2 0.1\n"),
            "labels require 5 columns, 6 columns detected",
        ),
        (lambda d: first_label(d).write_text("0 0.5 abc 0.2 0.2\n"), "00000.png: "),
        (
            lambda d: sorted((d / "images" / "val").glob("*.png"))[3].write_bytes(b"\x89PNG\r\n broken"),
            "00003.png: corrupt image, not a format PIL reads",
        ),
        (lambda d: [p.unlink() for p in (d / "images" / "val").glob("*.png")], "the val split has no images"),
        (
            lambda d: [p.write_text("") for p in (d / "labels" / "train").glob("*.txt")],
            "the train split has 16 images but no labelled box (every label file is empty or missing",
        ),
        (lambda d: shutil.rmtree(d / "labels" / "val"), "the val split has 8 images but no labelled box"),
        (lambda d: (d / "data.yaml").write_text("train: images/train\nnames: [a, b]\n"), "'val:' key missing"),
        (lambda d: (d / "data.yaml").write_text("train: [unclosed\n"), "data.yaml="),
        (lambda d: (d / "data.yaml").unlink(), "data.yaml="),
    ],
    ids=[
        "class-id",
        "coordinates",
        "six-columns",
        "not-numbers",
        "corrupt-image",
        "empty-split",
        "all-labels-empty",
        "all-labels-missing",
        "no-val-key",
        "malformed-yaml",
        "missing-yaml",
    ],
)
def test_broken_datasets_are_refused_naming_the_problem(
    dataset: Path, cache_root: Path, breakage, message: str
) -> None:
    breakage(dataset)
    with pytest.raises(ConfigError) as error:
        resolve(compose_config(cache_root, [f"data.yaml={dataset / 'data.yaml'}"]))
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert str(error.value).startswith(f"data.yaml={dataset / 'data.yaml'}")  # the user's file, not data=demo
    assert "ModuleNotFoundError" not in str(error.value) and "pi_heif" not in str(error.value)


def test_what_the_trainer_accepts_is_accepted(dataset: Path, cache_root: Path) -> None:
    first_label(dataset).write_text("0 0.5 0.5 0.2 1.005\n")  # ultralytics allows 1% past the edge
    assert resolve(compose_config(cache_root, [f"data.yaml={dataset / 'data.yaml'}"])).data.nc == 3


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
def test_unreachable_tracking_server_stops_the_sweep_before_any_run(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    result = run_cli(["-m", *TINY, "tracking.uri=http://127.0.0.1:9"], tmp_path, timeout=120)
    assert result.returncode == 2
    assert "tracking.uri=http://127.0.0.1:9: no MLflow server answers at 127.0.0.1:9" in result.stderr
    assert not list(tmp_path.glob("outputs/cache/demo-base-*"))


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single line a failing command prints, with no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("freeze-sweep: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("garbage://x", "tracking.uri=garbage://x: the MLflow store cannot be used"),
        ("http://127.0.0.1:9", "no MLflow server answers at 127.0.0.1:9"),
    ],
)
def test_an_unusable_store_stops_the_sweep_with_one_line(tmp_path: Path, uri: str, message: str) -> None:
    from tests.conftest import run_cli

    result = run_cli(["-m", *TINY, f"tracking.uri={uri}"], tmp_path, timeout=300)
    assert message in one_line_error(result)
    assert not list(tmp_path.glob("outputs/cache/demo-base-*"))  # nothing trained


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
def test_a_store_that_is_not_a_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    database = tmp_path / "outputs" / "mlflow.db"
    database.parent.mkdir(parents=True)
    database.write_bytes(b"not a database" * 100)
    result = run_cli(["-m", *TINY], tmp_path, timeout=300)
    assert "the MLflow store cannot be used" in one_line_error(result)
    assert database.read_bytes() == b"not a database" * 100


def start_sweep(root: Path, cache_root: Path, overrides: list[str], name: str) -> subprocess.Popen:
    sweep_dir = root / "outputs" / "multiruns" / name
    args = [*TINY, f"paths.cache_dir={cache_root}/outputs/cache", f"hydra.sweep.dir={sweep_dir}", *overrides]
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", "-m", *args],
        cwd=ROOT,
        env={**os.environ, "FREEZE_SWEEP_ROOT": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_two_identical_sweeps_started_together_on_a_new_store_train_each_variant_once(
    tmp_path: Path, cache_root: Path
) -> None:
    resolve(compose_config(cache_root, []))  # the shared tiny data exists before the race
    sweeps = [start_sweep(tmp_path, cache_root, ["freeze=none,backbone"], name) for name in ("a", "b")]
    outputs = [p.communicate(timeout=900)[0] for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    runs = variant_runs(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    hashes = [r.data.tags[names.CONFIG_HASH] for r in finished]
    assert len(hashes) == 2 and len(set(hashes)) == 2, [(r.info.run_name, r.info.status) for r in runs]
    assert all(r.info.status == "FINISHED" for r in runs)  # no duplicate, none left RUNNING or KILLED


@pytest.mark.slow
def test_one_sweep_whose_values_resolve_to_the_same_layers_trains_them_once(tmp_path: Path, cache_root: Path) -> None:
    sweep = run_sweep(
        tmp_path, cache_root, ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", "freeze=10,backbone"]
    )
    assert sweep.result.returncode == 0, sweep.result.stdout[-3000:]
    runs = variant_runs(sweep.tracking_uri)
    assert [r.info.status for r in runs] == ["FINISHED"], [(r.info.run_name, r.info.status) for r in runs]
    assert "2/2 variants finished" in sweep.result.stdout


def wait_for_epoch(results: Path, epochs: int, timeout_s: float = 400) -> None:
    """Until `epochs` rows are in results.csv and last.pt is completely written."""
    last = results.parent / "weights" / "last.pt"
    deadline, size = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        rows = len(results.read_text().splitlines()) - 1 if results.is_file() else 0
        if rows >= epochs and last.is_file() and last.stat().st_size == size:
            return
        size = last.stat().st_size if last.is_file() else -1
        time.sleep(0.05)
    raise AssertionError(f"{results} never reached epoch {epochs}")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_runs_killed_within_seconds_and_the_rerun_resumes(
    tmp_path: Path, cache_root: Path, signum: signal.Signals
) -> None:
    process = start_sweep(tmp_path, cache_root, [f"train.epochs={EPOCHS}", "freeze=backbone"], "first")
    wait_for_epoch(tmp_path / "outputs" / "multiruns" / "first" / "0" / "train" / "results.csv", 1)
    sent = time.monotonic()
    process.send_signal(signum)  # to the sweep's process only, as SLURM does
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 128 + signum, output[-3000:]
    assert time.monotonic() - sent < 60
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags[names.ROLE]: r.info.status for r in runs} == {"parent": "KILLED", "variant": "KILLED"}
    assert all(signum.name in r.data.tags[names.CLOSED_REASON] for r in runs)

    second = run_sweep(tmp_path, cache_root, [f"train.epochs={EPOCHS}", "freeze=backbone"], name="second")
    assert second.result.returncode == 0, second.result.stdout[-3000:]
    assert "Resuming backbone 10/23" in second.result.stdout + second.result.stderr
    (variant,) = [r for r in variant_runs(second.tracking_uri) if r.info.status == "FINISHED"]
    steps = [m.step for m in client.get_metric_history(variant.info.run_id, "mAP50")]
    assert steps == list(range(1, EPOCHS + 1))
    # issue 22.8: the interruption is history (resumed_after), not the finished run's error; the
    # resumed epoch's time is its own, not the restart's
    assert names.ERROR not in variant.data.tags and signum.name in variant.data.tags[names.RESUMED_AFTER]
    times = [m.value for m in client.get_metric_history(variant.info.run_id, names.EPOCH_TIME)]
    assert max(times) < 4 * statistics.median(times), times


@pytest.mark.slow
def test_after_kill_9_the_next_sweep_closes_the_dead_runs_and_reports_an_unreadable_checkpoint(
    tmp_path: Path, cache_root: Path
) -> None:
    process = start_sweep(tmp_path, cache_root, [f"train.epochs={EPOCHS}", "freeze=backbone"], "first")
    results = tmp_path / "outputs" / "multiruns" / "first" / "0" / "train" / "results.csv"
    wait_for_epoch(results, 1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (results.parent / "weights" / "last.pt").write_bytes(b"cut short")
    second = run_sweep(tmp_path, cache_root, [f"train.epochs={EPOCHS}", "freeze=backbone"], name="second")
    output = second.result.stdout + second.result.stderr
    assert second.result.returncode == 0, output[-3000:]
    assert "cannot resume backbone 10/23 · yolov8n-demo" in output and "retraining from the start" in output
    client = MlflowClient(second.tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = client.search_runs([experiment.experiment_id], "tags.`sweep.id` = 'first'")
    assert {r.info.status for r in runs} == {"KILLED"} and len(runs) == 2  # parent and variant
    assert all(r.data.tags[names.CLOSED_REASON].startswith("owner ") for r in runs)
