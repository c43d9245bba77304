"""The record stays trustworthy under the faults of issue 22, with real processes, a real
filesystem that fills (a small tmpfs, or a loop device where tmpfs cannot be mounted) and the
real MLflow server: the sweep's own bookkeeping failing, output folders refused before anything
is recorded, credentials in every form, a checkpoint of another config."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from tests.conftest import run_sweep
from tests.services import TrackingServer
from tests.test_reliability import EPOCHS, start_sweep, variant_runs, wait_for_epoch

pytestmark = pytest.mark.slow


@contextmanager
def small_filesystem(path: Path, size_mb: int, read_only: bool = False) -> Iterator[Path]:
    """A real filesystem of `size_mb` at `path`: tmpfs, else an ext4 image on a loop device (root only)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_mb}m" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    image = path.parent / f"{path.name}.img"
    if mounted.returncode != 0:
        subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True)
        loop = ["mount", "-o", "loop" + (",ro" if read_only else ""), str(image), str(path)]
        if made.returncode != 0 or subprocess.run(loop, capture_output=True).returncode != 0:
            pytest.skip(f"cannot mount a small filesystem here (tmpfs: {mounted.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        image.unlink(missing_ok=True)


def fill_when(trigger: Path, filesystem: Path) -> threading.Thread:
    """Fill `filesystem` to the last byte as soon as `trigger` exists (another process's file)."""

    def fill() -> None:
        deadline = time.monotonic() + 600
        while not trigger.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            with (filesystem / "filler").open("wb") as filler:
                while True:
                    filler.write(b"\0" * (1 << 20))
        except OSError:
            pass
        try:  # the last few KiB, in small pieces
            with (filesystem / "filler-tail").open("wb") as tail:
                while True:
                    tail.write(b"\0" * 512)
                    tail.flush()
        except OSError:
            pass

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    return thread


def all_runs(tracking_uri: str) -> list:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    return client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []


@pytest.mark.parametrize("when", ["0/.hydra", "0/train/args.yaml"], ids=["at-job-start", "mid-training"])
def test_a_disk_that_fills_during_the_sweep_fails_it_in_one_line_and_ends_the_parent(
    tmp_path: Path, cache_root: Path, when: str
) -> None:
    """Issue 22.1: Hydra's own files (at job start) or ultralytics' checkpoints and our variant.json
    (mid-training) meet a full disk: exit 1, the summary, one error line, nothing left RUNNING."""
    with small_filesystem(tmp_path / "disk", 80) as disk:
        sweep_dir = disk / "sweep"
        filler = fill_when(sweep_dir / when, disk)
        sweep = run_sweep(tmp_path, cache_root, ["freeze=0", f"hydra.sweep.dir={sweep_dir}"])
        filler.join(timeout=60)
        output = sweep.result.stdout + sweep.result.stderr
        assert sweep.result.returncode == 1, output[-3000:]
        assert "Traceback" not in output and "JSONDecodeError" not in output, output[-3000:]
        assert "freeze-sweep: 0/1 variants finished" in sweep.result.stdout
        errors = [line for line in sweep.result.stderr.splitlines() if "error:" in line]
        assert len(errors) <= 1 and "No space left on device" in output, output[-3000:]
        runs = all_runs(sweep.tracking_uri)
        statuses = {r.data.tags[names.ROLE]: r.info.status for r in runs}
        assert statuses["parent"] == "FAILED" and "RUNNING" not in statuses.values(), statuses


@pytest.mark.parametrize(
    ("size_mb", "read_only", "message"),
    [(1, True, "cannot write there (Read-only file system)"), (16, False, "MiB free on its filesystem")],
    ids=["read-only", "too-small"],
)
def test_an_output_folder_that_cannot_take_the_sweep_is_refused_before_anything_is_recorded(
    tmp_path: Path, cache_root: Path, size_mb: int, read_only: bool, message: str
) -> None:
    """Issue 22.2: one line naming hydra.sweep.dir, and no parent run (nor store) exists."""
    with small_filesystem(tmp_path / "disk", size_mb, read_only=read_only) as disk:
        sweep_dir = disk / "sweep"
        sweep = run_sweep(tmp_path, cache_root, ["freeze=0,10", f"hydra.sweep.dir={sweep_dir}"])
    assert sweep.result.returncode == 2, sweep.result.stderr[-3000:]
    (line,) = sweep.result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"freeze-sweep: error: hydra.sweep.dir={sweep_dir}: ") and message in line, line
    assert "Traceback" not in sweep.result.stderr
    assert all_runs(sweep.tracking_uri) == []


def test_a_token_in_the_tracking_uri_is_never_echoed(tmp_path: Path, cache_root: Path) -> None:
    """Issue 22.4: `?token=...` in the one-line error, Hydra's launch line, its saved files."""
    uri = "http://127.0.0.1:9/mlflow?access_token=T0K3N-SECRET&x=1"
    sweep = run_sweep(tmp_path, cache_root, ["freeze=0", f"tracking.uri='{uri}'"])
    output = sweep.result.stdout + sweep.result.stderr
    assert sweep.result.returncode == 2, output[-3000:]
    assert "no MLflow server answers at 127.0.0.1:9" in output and "access_token=***" in output
    assert "T0K3N-SECRET" not in output
    assert not any("T0K3N-SECRET" in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())


def secrets_found(password: str, texts: dict[str, str]) -> list[str]:
    return [where for where, text in texts.items() if password in text]


@pytest.mark.server
@pytest.mark.parametrize("given", ["environment", "quoted-override"])
def test_credentials_in_the_uri_reach_no_artifact_file_tag_param_or_line(
    tmp_path: Path, cache_root: Path, tracking_server: TrackingServer, given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22.4 on the real server: the password given in MLFLOW_TRACKING_URI (resolved into
    resolved.yaml through `${oc.env:...}`) or in a quoted override (printed on Hydra's launch line)
    is found nowhere: console, every file under the project, every run's tags, params and artifacts."""
    host = tracking_server.uri.split("://", 1)[1]
    with_credentials = f"http://{tracking_server.username}:{tracking_server.password}@{host}"
    experiment = f"secrets-{given}-{os.getpid()}-{time.time_ns()}"
    if given == "environment":
        env, overrides = {"MLFLOW_TRACKING_URI": with_credentials}, ["tracking=server"]
    else:
        env, overrides = None, [f"tracking.uri='{with_credentials}'"]
    sweep = run_sweep(
        tmp_path,
        cache_root,
        ["freeze=0", "train.epochs=1", f"tracking.experiment={experiment}", *overrides],
        env=env,
    )
    assert sweep.result.returncode == 0, sweep.result.stdout[-2000:] + sweep.result.stderr[-2000:]
    texts = {"console": sweep.result.stdout + sweep.result.stderr}
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size < 1 << 24]
    texts |= {str(p): p.read_text(errors="ignore") for p in files}
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", tracking_server.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", tracking_server.password)
    client = MlflowClient(tracking_server.uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 2  # the parent and its variant: the sweep really wrote to the server
    for run in runs:
        texts[f"{run.info.run_id} tags"] = repr(run.data.tags)
        texts[f"{run.info.run_id} params"] = repr(run.data.params)
        local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path.parent / f"art-{run.info.run_id}")))
        texts |= {f"artifact {p}": p.read_text(errors="ignore") for p in local.rglob("*") if p.is_file()}
    assert any("resolved.yaml" in where for where in texts) and any("overrides.yaml" in where for where in texts)
    assert secrets_found(tracking_server.password, texts) == []


def test_a_rerun_with_another_config_neither_overwrites_nor_resumes_the_killed_runs_checkpoint(
    tmp_path: Path, cache_root: Path
) -> None:
    """Issue 22.6: kill a training, re-run the same sweep folder with another lr0 (it trains
    beside it), then the first config again: it resumes its own checkpoint, epochs 1..N once."""
    first = ["freeze=backbone", f"train.epochs={EPOCHS}", "train.lr0=0.02"]
    process = start_sweep(tmp_path, cache_root, first, "shared")
    job = tmp_path / "outputs" / "multiruns" / "shared" / "0"
    wait_for_epoch(job / "train" / "results.csv", 1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_checkpoint = (job / "train" / "weights" / "last.pt").read_bytes()

    other = run_sweep(tmp_path, cache_root, ["freeze=backbone", "train.epochs=2", "train.lr0=0.03"], name="shared")
    assert other.result.returncode == 0, other.result.stderr[-3000:]
    assert (job / "train" / "weights" / "last.pt").read_bytes() == killed_checkpoint
    assert list(job.glob("train-*/weights/best.pt"))  # the other config trained beside it

    again = run_sweep(tmp_path, cache_root, first, name="shared")
    output = again.result.stdout + again.result.stderr
    assert again.result.returncode == 0, output[-3000:]
    assert "Resuming backbone 10/23" in output
    client = MlflowClient(again.tracking_uri)
    finished = [r for r in variant_runs(again.tracking_uri) if r.info.status == "FINISHED"]
    assert sorted(r.data.params["train.lr0"] for r in finished) == ["0.02", "0.03"]
    (resumed,) = [r for r in finished if r.data.params["train.lr0"] == "0.02"]
    assert [m.step for m in client.get_metric_history(resumed.info.run_id, "mAP50")] == list(range(1, EPOCHS + 1))
    assert names.ERROR not in resumed.data.tags and resumed.data.tags[names.RESUMED_AFTER].startswith("owner ")
