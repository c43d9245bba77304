"""The sweep's lifecycle in the store, with real processes and a real SQLite store: one claim
per variant across processes, stale runs closed with a reason, credentials never written."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from sweep.checkpoints import output_dir_for, record_config_hash
from sweep.signals import Interrupted, exit_code, stop_process_group
from sweep.tracking import claims, names, owners
from sweep.tracking.credentials import install_log_redaction, redact, scrub_argv, scrub_environment, without_credentials
from sweep.tracking.stale_runs import close_stale_runs
from sweep.tracking.store import open_experiment

HASH = "abc123"


def store(tmp_path: Path) -> tuple[MlflowClient, str, str]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client, experiment_id = open_experiment(uri, "freeze-sweep")
    return client, experiment_id, uri


def _claim_and_hold(uri: str, experiment_id: str, hold_s: float, queue) -> None:
    client = MlflowClient(uri)
    tags = {names.ROLE: names.ROLE_VARIANT, names.CONFIG_HASH: HASH}
    claim = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=False)
    queue.put((claim.outcome, claim.run.info.run_id))
    if claim.outcome == "train":
        time.sleep(hold_s)
        client.set_terminated(claim.run.info.run_id, "FINISHED")


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
def test_of_racing_workers_exactly_one_claims_the_variant(tmp_path: Path) -> None:
    client, experiment_id, uri = store(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_claim_and_hold, args=(uri, experiment_id, 8.0, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(o for o, _ in outcomes) == ["held", "held", "held", "train"], outcomes
    trained = next(run_id for outcome, run_id in outcomes if outcome == "train")
    assert {run_id for outcome, run_id in outcomes if outcome == "held"} == {trained}  # they name the holder
    runs = client.search_runs([experiment_id], f"tags.{names.CONFIG_HASH} = '{HASH}'")
    assert [r.info.run_id for r in runs] == [trained]  # withdrawn claims are deleted, not left behind
    withdrawn = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert all(r.info.status == "KILLED" for r in withdrawn)  # not RUNNING for ever (when the race had any)
    assert all(r.data.tags[names.CLOSED_REASON].startswith("claim withdrawn") for r in withdrawn)


def test_a_claim_still_being_decided_is_not_named_the_holder(tmp_path: Path) -> None:
    """A rival's fresh run may withdraw in the next moment (its own rival check): a worker that
    leaves held variants alone must not name it as the holder, and takes the variant once it goes;
    a claim that won, or a live run older than the settling time, holds the variant."""
    client, experiment_id, _ = store(tmp_path)
    tags = {names.ROLE: names.ROLE_VARIANT, names.CONFIG_HASH: HASH}
    deciding = client.create_run(experiment_id, run_name="v", tags={**tags, **owners.owner_tags()})
    withdrawing = threading.Timer(1.5, claims.withdraw, (client, deciding.info.run_id, "x", "claim withdrawn: test"))
    withdrawing.start()
    claim = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=False)
    withdrawing.join()
    assert claim.outcome == "train" and claim.run.info.run_id != deciding.info.run_id
    assert claim.run.data.tags[names.CLAIMED] == "true"  # the winner says so at once
    held = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=False)
    assert held.outcome == "held" and held.run.info.run_id == claim.run.info.run_id
    client.set_terminated(claim.run.info.run_id, "KILLED")
    client.delete_run(claim.run.info.run_id)
    old = (time.time() - claims.CLAIM_SETTLE_S - 5) * 1000
    untagged = client.create_run(experiment_id, start_time=int(old), run_name="v", tags={**tags, **owners.owner_tags()})
    held = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=False)
    assert held.outcome == "held" and held.run.info.run_id == untagged.info.run_id


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
def test_a_finished_variant_is_reused_and_a_live_one_is_waited_for(tmp_path: Path) -> None:
    client, experiment_id, uri = store(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    holder = ctx.Process(target=_claim_and_hold, args=(uri, experiment_id, 4.0, queue))
    holder.start()
    _, held_id = queue.get(timeout=120)
    started = time.monotonic()
    tags = {names.ROLE: names.ROLE_VARIANT, names.CONFIG_HASH: HASH}
    claim = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=True, poll_s=0.5)
    holder.join(timeout=60)
    assert claim.outcome == "finished" and claim.run.info.run_id == held_id
    assert time.monotonic() - started > 1.0  # it waited for the holder to finish


def test_a_run_whose_owner_died_is_closed_with_the_reason_and_the_variant_claimed_again(tmp_path: Path) -> None:
    client, experiment_id, uri = store(tmp_path)
    code = (
        "import os, sys\n"
        "from mlflow.tracking import MlflowClient\n"
        "from sweep.tracking import claims, names\n"
        f"client = MlflowClient({uri!r})\n"
        f"tags = {{names.ROLE: names.ROLE_VARIANT, names.CONFIG_HASH: {HASH!r}}}\n"
        f"claim = claims.claim_variant(client, {experiment_id!r}, {HASH!r}, 'v', tags)\n"
        "print(claim.run.info.run_id, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    dead_id = dead.stdout.strip()
    assert client.get_run(dead_id).info.status == "RUNNING"  # what kill -9 leaves behind
    assert not owners.is_alive(client.get_run(dead_id))

    tags = {names.ROLE: names.ROLE_VARIANT, names.CONFIG_HASH: HASH}
    claim = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=False)
    assert claim.outcome == "train" and claim.run.info.run_id != dead_id
    closed = client.get_run(dead_id)
    assert closed.info.status == "KILLED"
    assert closed.data.tags[names.CLOSED_REASON].startswith("owner ")
    assert "is gone" in closed.data.tags[names.CLOSED_REASON]


def test_an_owner_on_another_host_is_judged_by_its_heartbeat(tmp_path: Path) -> None:
    client, experiment_id, _ = store(tmp_path)
    now = time.time()
    fresh = client.create_run(
        experiment_id,
        tags={
            names.ROLE: names.ROLE_VARIANT,
            names.OWNER: "elsewhere:1:1",
            names.HEARTBEAT: f"{now - 5:.0f} elsewhere:1:1",
        },
    )
    stale = client.create_run(
        experiment_id,
        tags={
            names.ROLE: names.ROLE_VARIANT,
            names.OWNER: "elsewhere:2:1",
            names.HEARTBEAT: f"{now - 3600:.0f} elsewhere:2:1",
        },
    )
    dead_here = client.create_run(  # a parent whose launcher died here, last beaten by a job elsewhere
        experiment_id,
        tags={
            names.ROLE: names.ROLE_PARENT,
            names.OWNER: f"{socket.gethostname()}:999999:1",
            names.HEARTBEAT: f"{now - 5:.0f} node7:12:1",
        },
    )
    assert close_stale_runs(client, [experiment_id]) == [stale.info.run_id]
    assert client.get_run(fresh.info.run_id).info.status == "RUNNING"
    assert client.get_run(dead_here.info.run_id).info.status == "RUNNING"  # its job elsewhere still beats


def test_a_heartbeat_keeps_a_run_alive_and_reopens_it_if_closed_as_stale(tmp_path: Path) -> None:
    client, experiment_id, _ = store(tmp_path)
    run = client.create_run(experiment_id, tags={names.ROLE: names.ROLE_VARIANT, **owners.owner_tags()})
    run_id = run.info.run_id
    client.set_tag(run_id, names.CLOSED_REASON, f"{owners.STALE_REASON} x is gone (clock skew)")
    client.set_terminated(run_id, "KILLED")
    with owners.Heartbeat(client, [run_id], interval_s=0.2):
        deadline = time.monotonic() + 60  # a beat is due every 0.2 s; a loaded machine may delay the first
        while client.get_run(run_id).info.status != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
    assert client.get_run(run_id).info.status == "RUNNING"


def test_credentials_are_moved_out_of_the_uri_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # set first: undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert without_credentials("http://alice:s3cret@127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    assert scrub_argv(["-m", "tracking.uri=https://bob:pw@host/mlflow", "freeze=none"]) == [
        "-m",
        "tracking.uri=https://host/mlflow",
        "freeze=none",
    ]
    assert redact("see http://alice:s3cret@h:1/x and postgresql://u:p@db/x") == (
        "see http://alice:***@h:1/x and postgresql://u:***@db/x"
    )
    assert without_credentials("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def test_signal_names_the_exit_code() -> None:
    assert exit_code(Interrupted(signal.SIGTERM)) == 143
    assert exit_code(Interrupted(signal.SIGINT)) == 130


def test_a_checkpoint_is_resumed_only_by_a_run_of_its_own_config(tmp_path: Path) -> None:
    import torch

    client, experiment_id, _ = store(tmp_path)
    save_dir = tmp_path / "0" / "train"
    (save_dir / "weights").mkdir(parents=True)
    torch.save({"optimizer": {"state": {}}, "epoch": 1}, save_dir / "weights" / "last.pt")
    run = client.create_run(
        experiment_id, tags={names.ROLE: names.ROLE_VARIANT, names.CONFIG_HASH: HASH, names.OUTPUT_DIR: str(save_dir)}
    )
    run = client.get_run(run.info.run_id)
    assert claims.resume_point(run) is None  # no record of the config that wrote it
    record_config_hash(save_dir, "another-config")
    assert claims.resume_point(run) is None
    record_config_hash(save_dir, HASH)
    assert claims.resume_point(run) == (save_dir / "weights" / "last.pt", 2)
    # the claim resumes it: the interruption's error goes, the fresh run it made is ended, then deleted
    client.set_tag(run.info.run_id, names.ERROR, "Interrupted: SIGTERM")
    client.set_terminated(run.info.run_id, "KILLED")
    tags = {names.ROLE: names.ROLE_VARIANT, names.CONFIG_HASH: HASH, names.OUTPUT_DIR: str(save_dir)}
    claim = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=False)
    assert (claim.outcome, claim.run.info.run_id, claim.resume_epoch) == ("train", run.info.run_id, 2)
    assert names.ERROR not in client.get_run(run.info.run_id).data.tags
    (replaced,) = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert replaced.info.status == "KILLED"
    assert replaced.data.tags[names.CLOSED_REASON] == f"replaced by the resumed run {run.info.run_id}"
    assert replaced.data.tags[names.SUPERSEDED_BY] == run.info.run_id  # never taken for a leftover meanwhile
    # another config re-run in the same job folder trains beside it, never over its last.pt
    assert output_dir_for(save_dir.parent, HASH) == save_dir
    assert output_dir_for(save_dir.parent, "another-config") == save_dir.parent / "train-another-config"


def test_slurms_time_limit_signal_is_named_in_the_interruption() -> None:
    """submitit takes SIGUSR2 in a SLURM job and requeues, which sends SIGTERM: the reason says both."""
    script = (
        "import os, signal\n"
        "from sweep.signals import install_signal_handlers\n"
        "signal.signal(signal.SIGUSR2, lambda *a: print('submitit handled it'))\n"
        "install_signal_handlers()\n"
        "os.kill(os.getpid(), signal.SIGUSR2)\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "except KeyboardInterrupt as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines() == ["submitit handled it", "SIGTERM after SIGUSR2 (SLURM's time-limit warning)"]


def test_redact_hides_every_form_a_credential_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # set first: undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert redact("http://h:1/?token=t0k3n&x=1&api_key=k3y") == "http://h:1/?token=***&x=1&api_key=***"
    # a quoted override keeps its quotes, loses its credentials (and Hydra's launch line with it)
    assert scrub_argv(["tracking.uri='http://carol:pa55word@h:1'"]) == ["tracking.uri='http://h:1'"]
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "pa55word"
    assert redact("a bare pa55word in an error") == "a bare *** in an error"  # a known secret, in any form
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://dave:other-pw@h:2")
    scrub_environment()  # `${oc.env:MLFLOW_TRACKING_URI}` then resolves to a clean URI
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://h:2"


def test_every_log_record_is_redacted(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())  # restored afterwards
    install_log_redaction()
    logging.getLogger("hydra._internal.core_plugins.basic_launcher").warning(
        "\t#%d : %s", 0, "tracking.uri=http://eve:s3cr3t@h:1/?token=abc"
    )
    assert caplog.records[-1].getMessage() == "\t#0 : tracking.uri=http://eve:***@h:1/?token=***"


def test_a_stopped_variant_is_reused_up_to_its_training_time_and_continued_beyond(tmp_path: Path) -> None:
    """A budget's stop stands for a rung whose allotment the run trained (a re-run of its sweep); a
    larger allotment, or a plain sweep (no allotment), continues it in the same run, no longer stopped."""
    import torch
    from mlflow.entities import Metric

    client, experiment_id, _ = store(tmp_path)
    save_dir = tmp_path / "0" / "train"
    (save_dir / "weights").mkdir(parents=True)
    torch.save({"optimizer": {"state": {}}, "epoch": 1}, save_dir / "weights" / "last.pt")  # paused after 2 epochs
    record_config_hash(save_dir, HASH)
    tags = {names.ROLE: names.ROLE_VARIANT, names.CONFIG_HASH: HASH, names.OUTPUT_DIR: str(save_dir)}
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    client.log_batch(run_id, metrics=[Metric(names.EPOCH_TIME, 1.5, 0, epoch) for epoch in (1, 2)])
    client.set_tag(run_id, names.STOPPED_AT_RUNG, "1")
    client.set_tag(run_id, names.STOPPED_REASON, "rung 1: below the 1 kept")
    client.set_terminated(run_id, "FINISHED")

    for until_s in (2.0, 3.0):  # its rung's allotment trained: the stop stands
        claim = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=False, until_s=until_s)
        assert (claim.outcome, claim.run.info.run_id) == ("finished", run_id)
    for until_s in (6.0, None):  # a larger budget's rung, a plain sweep: trained on from its last.pt
        claim = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=False, until_s=until_s)
        assert (claim.outcome, claim.run.info.run_id, claim.resume_epoch) == ("train", run_id, 2)
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING" and names.STOPPED_AT_RUNG not in run.data.tags
        assert run.data.tags[names.RESUMED_AFTER] == "stopped by the budget at rung 1: rung 1: below the 1 kept"
        client.set_tag(run_id, names.STOPPED_AT_RUNG, "1")  # stopped again, as a rung of a larger budget may
        client.set_tag(run_id, names.STOPPED_REASON, "rung 1: below the 1 kept")
        client.set_terminated(run_id, "FINISHED")
    (save_dir / "weights" / "last.pt").unlink()  # nothing to continue from: trained anew, the stopped run replaced
    claim = claims.claim_variant(client, experiment_id, HASH, "v", tags, wait=False)
    assert claim.outcome == "train" and claim.run.info.run_id != run_id and not claim.resuming
    claims.supersede(client, claim.leftovers, claim.run.info.run_id)
    assert client.get_run(run_id).data.tags[names.SUPERSEDED_BY] == claim.run.info.run_id


def test_a_child_that_ignores_sigterm_goes_too_once_its_leader_has_gone(tmp_path: Path) -> None:
    """The leader dies of SIGTERM, its child ignores it: the group is not gone until SIGKILL."""
    pid_file = tmp_path / "child"
    command = ["sh", "-c", f"(trap '' TERM; exec sleep 60) & echo $! > {pid_file}; wait"]
    process = subprocess.Popen(command, start_new_session=True)
    while not pid_file.is_file() or not pid_file.read_text().strip():
        time.sleep(0.05)
    child = int(pid_file.read_text())
    stop_process_group(process, term_grace_s=1.0)
    assert process.poll() is not None
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
