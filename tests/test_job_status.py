"""A job's outcome: decided by one rule, written whole to variant.json, read back by the summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.hydra_callbacks import finish_sweep
from sweep.tracking.job_status import STATUS_FILE, Job, JobStatus, Outcome, read_statuses, write_status
from sweep.tracking.parent_run import SweepInfo, start_parent_run
from sweep.tracking.store import open_experiment


def test_how_a_job_ends_decides_its_outcome() -> None:
    assert Job("v", "r1").end(metrics={"mAP50": 1}).outcome is Outcome.FINISHED
    assert Job("v", "r1").end(held=True, note="held").outcome is Outcome.HELD
    failed = Job("v", "r1").end(RuntimeError("CUDA out of memory"))
    assert failed.outcome is Outcome.FAILED and failed.run_id == "r1"
    assert failed.error.startswith("RuntimeError: CUDA out of memory -- hint: out of memory")
    assert Job("v").end(KeyboardInterrupt("SIGTERM")).outcome is Outcome.KILLED
    assert Job("v").end(SystemExit(0)).outcome is Outcome.KILLED  # submitit requeueing the job
    assert Job("v", "r1").end(paused=True, note="paused at rung 1").outcome is Outcome.PAUSED  # a budget's rung
    assert Job("v").end(KeyboardInterrupt("SIGTERM"), paused=True).outcome is Outcome.KILLED
    assert [o.ok for o in Outcome] == [
        True,
        True,
        False,
        False,
        False,
    ]  # a sweep that ends on a pause did not finish it


def test_a_status_survives_its_file(tmp_path: Path) -> None:
    status = Job("backbone 10/23", "r1").end(reused=True, note="run r1 already finished it")
    (tmp_path / "0").mkdir()
    write_status(tmp_path / "0", status)
    assert read_statuses(tmp_path) == [status]


def test_a_missing_or_half_written_variant_json_is_a_failed_job_not_a_crash(tmp_path: Path) -> None:
    for job in ("0", "1", "2", "3"):
        (tmp_path / job / ".hydra").mkdir(parents=True)
    write_status(tmp_path / "0", JobStatus("v0", Outcome.FINISHED))
    (tmp_path / "1" / STATUS_FILE).write_text('{"name": "v1", "sta')  # cut short by a full disk
    (tmp_path / "3" / STATUS_FILE).write_text('["not", "a status"]')
    statuses = read_statuses(tmp_path, n_jobs=5)
    assert [s.outcome for s in statuses] == [Outcome.FINISHED] + [Outcome.FAILED] * 4
    assert "unreadable (JSONDecodeError)" in statuses[1].error
    assert statuses[2].error.startswith(f"no {tmp_path / '2' / STATUS_FILE}")
    assert statuses[3].error == f"{tmp_path / '3' / STATUS_FILE} is not a status"
    assert statuses[4].error == "the job left no folder in the sweep"
    assert not list(tmp_path.glob("*/.variant.json.*"))  # no temporary file left behind


def test_the_summary_reads_the_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client, experiment_id = open_experiment(uri, "freeze-sweep")
    sweep_dir = tmp_path / "sweep"
    parent = start_parent_run(client, experiment_id, "s1", {})
    SweepInfo(uri, experiment_id, "s1", parent, n_variants=3).write(sweep_dir)
    for job in ("0", "1", "2"):
        (sweep_dir / job).mkdir()
    write_status(sweep_dir / "0", Job("none", "r0").end(reused=True, note="reused"))
    write_status(sweep_dir / "1", Job("backbone", "r9").end(held=True, note="held"))
    write_status(sweep_dir / "2", Job("all_but_head", "r2").end(ValueError("bad")))
    with pytest.raises(SystemExit) as exit_:
        finish_sweep(sweep_dir, uri)
    out = capsys.readouterr().out
    assert exit_.value.code == 1
    assert "2/3 variants finished" in out
    assert "  HELD backbone: run r9 of another sweep is training it" in out
    assert "  FAILED all_but_head: ValueError: bad" in out
    assert client.get_run(parent).info.status == "FAILED"
