"""The life of a sweep and of its variants in the tracking store, in one place.

The store is the one thing every worker shares (one machine or many, SQLite or a server), so it
also carries the coordination:
- every run records its owner (host, pid) and a heartbeat; a RUNNING run whose owner is gone
  (its process on this host, or its heartbeat from another host older than STALE_AFTER_S) is
  closed as KILLED, with the reason, by the next sweep or report;
- a variant (config hash) is trained by one worker at a time: a worker claims it by creating its
  run and checking that no other live run of that hash exists (see `claim_variant`);
- a finished variant is reused, an interrupted one resumed from its checkpoint, leftovers
  closed as superseded;
- SIGTERM (SLURM preemption, time limit) and SIGINT end the runs KILLED within seconds.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweep.files import write_atomic
from sweep.tracking import names
from sweep.tracking.credentials import redact
from sweep.tracking.periodic import Periodic

log = logging.getLogger("sweep")

SWEEP_FILE = "sweep.json"  # in the sweep folder: tells jobs (any launcher) their parent run
STATUS_FILE = "variant.json"  # in each job folder: read by the sweep's end-of-run summary
HEARTBEAT_S = 10.0
STALE_AFTER_S = 90.0  # a heartbeat older than this means the owner is gone (owner on another host)
CLAIM_POLL_S = 10.0
STALE_REASON = "owner"  # how a closed_reason set by `close_stale_runs` starts


# --- owners and heartbeats --------------------------------------------------------------------


def owner_tag(process: psutil.Process | None = None) -> str:
    """host:pid:process start time (the start time tells a reused pid from the original)."""
    process = process or psutil.Process()
    return f"{socket.gethostname()}:{process.pid}:{int(process.create_time())}"


def heartbeat_tag() -> str:
    """When, and who beat. Each run is beaten by its owner alone: a sweep's parent run by the
    launching process, never by its jobs, so the parent dies with the sweep."""
    return f"{time.time():.0f} {owner_tag()}"


def owner_tags() -> dict[str, str]:
    return {names.OWNER: owner_tag(), names.HEARTBEAT: heartbeat_tag()}


def _process_alive(owner: str) -> bool | None:
    """Whether a process `host:pid:start` still runs; None when it ran on another host."""
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        return int(psutil.Process(int(pid)).create_time()) == int(started or 0)
    except (psutil.Error, ValueError):
        return False


def is_alive(run: Run, now: float | None = None, stale_after_s: float = STALE_AFTER_S) -> bool:
    """A RUNNING run is alive while its owner or its last heartbeat's writer runs on this host,
    or while a heartbeat written on another host is fresh."""
    if run.info.status != "RUNNING":
        return False
    tags = run.data.tags
    when, _, beater = tags.get(names.HEARTBEAT, "").partition(" ")
    owner_here, beater_here = _process_alive(tags.get(names.OWNER, "")), _process_alive(beater)
    if owner_here or beater_here:
        return True
    try:
        fresh = (now or time.time()) - float(when) < stale_after_s
    except ValueError:
        return False
    return fresh and beater_here is None


class Heartbeat:
    """Keeps `run_ids` visibly alive from a background thread while training runs. The first run
    is this process's own: if someone closed it as stale (a clock or network hiccup), it is put
    back to RUNNING, since its owner is evidently alive."""

    def __init__(self, client: MlflowClient, run_ids: Iterable[str], interval_s: float = HEARTBEAT_S) -> None:
        self.client, self.run_ids = client, [r for r in run_ids if r]
        self._ticker = Periodic(self._beat_or_warn, interval_s, "freeze-sweep-heartbeat")

    def __enter__(self) -> Heartbeat:
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ticker.stop()

    def _beat_or_warn(self) -> None:
        try:
            self.beat()
        except Exception as error:  # a store hiccup must not stop training; the next beat retries
            log.warning("heartbeat not written: %s", redact(str(error).splitlines()[0] if str(error) else ""))

    def beat(self) -> None:
        for run_id in self.run_ids:
            self.client.set_tag(run_id, names.HEARTBEAT, heartbeat_tag())
        own = self.client.get_run(self.run_ids[0])
        closed_as_stale = own.data.tags.get(names.CLOSED_REASON, "").startswith(STALE_REASON)
        if not self._ticker.stopped and own.info.status == "KILLED" and closed_as_stale:
            self.client.update_run(own.info.run_id, status="RUNNING")
            self.client.set_tag(own.info.run_id, names.CLOSED_REASON, "")


def close_stale_runs(client: MlflowClient, experiment_ids: list[str], extra_filter: str = "") -> list[str]:
    """Close RUNNING runs whose owner is gone as KILLED, saying why. Returns their ids."""
    query = "attributes.status = 'RUNNING'" + (f" and {extra_filter}" if extra_filter else "")
    closed = []
    now = time.time()
    for run in client.search_runs(experiment_ids, query, max_results=1000):
        if names.ROLE not in run.data.tags or is_alive(run, now):
            continue
        fresh = client.get_run(run.info.run_id)  # read again just before closing
        if is_alive(fresh, time.time()):
            continue
        owner = fresh.data.tags.get(names.OWNER, "an unknown process")
        beat = fresh.data.tags.get(names.HEARTBEAT, "").split(" ")[0]
        since = f"last heartbeat {time.time() - float(beat):.0f} s ago" if beat else "no heartbeat"
        client.set_tag(run.info.run_id, names.CLOSED_REASON, f"{STALE_REASON} {owner} is gone ({since})")
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
        log.warning("Closed run %s (%s) as KILLED: owner %s is gone", run.info.run_id, run.info.run_name, owner)
    return closed


# --- the sweep (launching process) -----------------------------------------------------------


@dataclass(frozen=True)
class SweepInfo:
    tracking_uri: str
    experiment_id: str
    sweep_id: str
    parent_run_id: str
    n_variants: int = 0  # 0: unknown (a sweeper whose jobs are not known in advance)
    parallel: int = 1  # variants trained at once
    owner: str = field(default_factory=owner_tag)  # the launching process: the sweep lives as long as it does

    def write(self, sweep_dir: Path) -> None:
        """Whole or not at all; the URI without credentials (jobs connect with their own config)."""
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(
            sweep_dir / SWEEP_FILE, json.dumps({**self.__dict__, "tracking_uri": redact(self.tracking_uri)}, indent=2)
        )

    @classmethod
    def read(cls, sweep_dir: Path) -> SweepInfo | None:
        path = Path(sweep_dir) / SWEEP_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None


def start_parent_run(client: MlflowClient, experiment_id: str, sweep_id: str, tags: dict[str, str]) -> str:
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{sweep_id}",
        tags={names.SWEEP_ID: sweep_id, names.ROLE: names.ROLE_PARENT, **owner_tags(), **tags},
    )
    return run.info.run_id


def finish_parent_run(client: MlflowClient, info: SweepInfo, jobs_failed: bool) -> str:
    """FAILED if a job failed (even before its variant run existed) or a variant run of the sweep
    did not finish, else FINISHED. Raises if the store cannot record it."""
    from sweep.tracking.sweeps import sweep_of_parent, variant_runs

    runs = variant_runs(client, sweep_of_parent(client, info.parent_run_id))
    own = [r for r in runs if r.data.tags.get(names.PARENT_RUN_ID) == info.parent_run_id]
    status = "FAILED" if jobs_failed or any(r.info.status != "FINISHED" for r in own) else "FINISHED"
    client.set_terminated(info.parent_run_id, status)
    return status


def end_runs_killed(client: MlflowClient, run_ids: Iterable[str], reason: str, status: str = "KILLED") -> None:
    """Best effort, on the way out after a signal (or a failure): the runs say KILLED and why."""
    for run_id in run_ids:
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, names.CLOSED_REASON, reason)
                client.set_terminated(run_id, status)
        except Exception as error:
            log.warning("run %s not closed: %s", run_id, redact(str(error).splitlines()[0] if str(error) else ""))


_active: list[tuple[MlflowClient, SweepInfo, Heartbeat]] = []  # the sweep this process launched


def start_active_sweep(client: MlflowClient, info: SweepInfo) -> None:
    """The launching process keeps its parent run alive until the sweep ends. Held here, not on
    Hydra's callback object, which launchers such as submitit pickle."""
    stop_active_sweep()
    _active.append((client, info, Heartbeat(client, [info.parent_run_id]).__enter__()))


def stop_active_sweep() -> None:
    for _, _, heartbeat in _active:
        heartbeat.__exit__(None, None, None)
    _active.clear()


def end_active_sweep(reason: str, status: str = "KILLED") -> None:
    """After a signal (KILLED) or a failure that ended Hydra itself (FAILED): the parent run this
    process started ends so, saying why."""
    runs = [(client, info) for client, info, _ in _active]
    stop_active_sweep()
    for client, info in runs:
        end_runs_killed(client, [info.parent_run_id], reason, status)


# --- job status ---------------------------------------------------------------------------------


def write_status(job_dir: Path, status: dict) -> None:
    """Whole or not at all (a full disk leaves no half-written file); raises OSError."""
    write_atomic(job_dir / STATUS_FILE, json.dumps(status, indent=2))


def read_statuses(sweep_dir: Path, n_jobs: int = 0) -> list[dict]:
    """Every job's status, in job order. A job whose variant.json is missing or unreadable (a full
    disk, a job killed before it wrote one) is FAILED, saying so; so is each job of the `n_jobs`
    the sweep launched (when known) that left no folder at all."""
    sweep_dir = Path(sweep_dir)
    job_dirs = {p.parent for p in [*sweep_dir.glob("*/.hydra"), *sweep_dir.glob(f"*/{STATUS_FILE}")]}
    ordered = sorted(job_dirs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))
    statuses = [_read_status(job_dir) for job_dir in ordered]
    missing = max(0, n_jobs - len(statuses))
    return statuses + [{"name": "?", "status": "FAILED", "error": "the job left no folder in the sweep"}] * missing


def _read_status(job_dir: Path) -> dict:
    path = job_dir / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        status = f"no {path}: the job ended before recording its outcome (full disk? killed?)"
    except (OSError, ValueError) as error:
        status = f"{path} unreadable ({type(error).__name__})"
    if isinstance(status, dict):
        return status
    return {
        "name": f"job {job_dir.name}",
        "status": "FAILED",
        "error": status if isinstance(status, str) else f"{path} is not a status",
    }


# --- variants: reuse, resume, claim ----------------------------------------------------------


@dataclass
class Claim:
    """What a worker may do with a variant: train it (`run` is its claim), or nothing, because
    it is `finished` (reuse) or `held` by a live run of another worker."""

    outcome: str  # "train", "finished" or "held"
    run: Run
    resume_epoch: int = 0  # epochs already in `run` when it is resumed (1-based, as logged)
    leftovers: list[Run] = field(default_factory=list)

    @property
    def resuming(self) -> bool:
        return self.resume_epoch > 0


def resume_point(run: Run) -> tuple[Path, int] | None:
    """The run's last.pt and the epochs it completed, if ultralytics can resume from it.

    A checkpoint stripped at the end of training (no optimizer state) cannot be resumed: its
    run died while finishing up, and is retrained. An unreadable one, or one trained with another
    config (its folder's recorded config hash differs), is said so, never hidden.
    """
    import torch

    from sweep.checkpoints import config_hash_of

    save_dir = run.data.tags.get(names.OUTPUT_DIR)
    last = Path(save_dir) / "weights" / "last.pt" if save_dir else None
    if last is None or not last.is_file():
        return None
    trained, wanted = config_hash_of(last.parent.parent), run.data.tags.get(names.CONFIG_HASH)
    if trained != wanted:
        log.warning(
            "cannot resume %s: %s is the checkpoint of config %s, not of this run's config %s; retraining from the start",
            run.info.run_name,
            last,
            trained or "(not recorded)",
            wanted,
        )
        return None
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as error:  # a checkpoint cut short by the kill itself
        log.warning(
            "cannot resume %s: %s unreadable (%s); retraining from the start",
            run.info.run_name,
            last,
            type(error).__name__,
        )
        return None
    if ckpt.get("optimizer") is None or ckpt.get("epoch", -1) < 0:
        return None
    return last, int(ckpt["epoch"]) + 1


def _variant_runs(client: MlflowClient, experiment_id: str, config_hash: str) -> list[Run]:
    query = f"tags.{names.CONFIG_HASH} = '{config_hash}' and tags.`{names.ROLE}` = '{names.ROLE_VARIANT}'"
    runs = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1000)
    return [r for r in runs if names.SUPERSEDED_BY not in r.data.tags]


def claim_variant(
    client: MlflowClient,
    experiment_id: str,
    config_hash: str,
    run_name: str,
    tags: dict[str, str],
    rerun: bool = False,
    wait: bool = True,
    poll_s: float = CLAIM_POLL_S,
) -> Claim:
    """Claim a variant for training, or say why not.

    The claim is the variant's run itself: create it, then look for other live runs of the same
    config hash. If there are, withdraw (delete ours) and retry after a random pause. With a
    store that serialises writes, two workers cannot both find themselves alone: whichever
    looked second would have seen the other's run. A held variant is waited for (`wait`), or
    left to its holder.
    """
    while True:
        close_stale_runs(client, [experiment_id], f"tags.{names.CONFIG_HASH} = '{config_hash}'")
        runs = _variant_runs(client, experiment_id, config_hash)
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if finished and not rerun:
            return Claim("finished", finished[0])
        live = [r for r in runs if is_alive(r)]
        if live:
            if not wait:
                return Claim("held", live[0])
            log.info(
                "Waiting for %s: run %s (%s) is training it; checking every %.0f s",
                run_name,
                live[0].info.run_id,
                live[0].data.tags.get(names.OWNER, "?"),
                poll_s,
            )
            _wait_until_not_alive(client, live[0].info.run_id, poll_s)
            continue
        mine = client.create_run(experiment_id, run_name=run_name, tags={**tags, **owner_tags()})
        rivals = [r for r in _variant_runs(client, experiment_id, config_hash) if r.info.run_id != mine.info.run_id]
        live_rivals = [r for r in rivals if is_alive(r)]
        if live_rivals:
            holder = live_rivals[0].info.run_id
            withdraw(client, mine.info.run_id, holder, f"claim withdrawn: run {holder} holds the variant")
            time.sleep(random.uniform(0.2, 2.0))
            continue
        unfinished = [r for r in runs if r.info.status != "FINISHED"]
        return _train_or_resume(client, mine, unfinished, rerun, tags)


def _wait_until_not_alive(client: MlflowClient, run_id: str, poll_s: float) -> None:
    while is_alive(client.get_run(run_id)):
        time.sleep(poll_s)


def _train_or_resume(client: MlflowClient, mine: Run, unfinished: list[Run], rerun: bool, tags: dict) -> Claim:
    """We hold the variant. Continue the newest resumable run in place of our fresh one (it is
    made live before ours is withdrawn, so the variant is never unclaimed), else train in ours.
    A continued run joins this sweep, and keeps its output folder (its checkpoint is there)."""
    for run in unfinished if not rerun else []:
        point = resume_point(run)
        if point is None:
            continue
        client.update_run(run.info.run_id, status="RUNNING")
        for key, value in {**tags, **owner_tags()}.items():
            if key != names.OUTPUT_DIR:
                client.set_tag(run.info.run_id, key, value)
        reason = run.data.tags.get(names.CLOSED_REASON) or f"ended {run.info.status}"
        client.set_tag(run.info.run_id, names.RESUMED_AFTER, reason)
        client.set_tag(run.info.run_id, names.CLOSED_REASON, "")
        for key in (names.ERROR, names.ERROR_TRACEBACK):  # the interruption is history now, not the outcome
            if key in run.data.tags:
                client.delete_tag(run.info.run_id, key)
        withdraw(client, mine.info.run_id, run.info.run_id, f"replaced by the resumed run {run.info.run_id}")
        others = [r for r in unfinished if r.info.run_id != run.info.run_id]
        return Claim("train", client.get_run(run.info.run_id), point[1], others)
    return Claim("train", mine, 0, unfinished)


def withdraw(client: MlflowClient, run_id: str, by_run_id: str, reason: str) -> None:
    """A run given up before it trained ends KILLED, saying why, then is deleted: a deleted run
    keeps its status, and must not read RUNNING for ever. Marked superseded first, so no other
    worker takes it for a leftover to resume in the moment before it is deleted."""
    client.set_tag(run_id, names.SUPERSEDED_BY, by_run_id)
    client.set_tag(run_id, names.CLOSED_REASON, reason)
    client.set_terminated(run_id, "KILLED")
    client.delete_run(run_id)


def supersede(client: MlflowClient, runs: list[Run], by_run_id: str) -> None:
    """Close unfinished leftovers explicitly, pointing at the run that replaces them."""
    for run in runs:
        if run.info.status != "FINISHED":
            client.set_tag(run.info.run_id, names.SUPERSEDED_BY, by_run_id)
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")


def mark_reused(client: MlflowClient, run: Run, info: SweepInfo | None) -> None:
    """A finished (or held) run of another sweep belongs to this sweep's results too."""
    if info is not None and run.data.tags.get(names.PARENT_RUN_ID) != info.parent_run_id:
        client.set_tag(run.info.run_id, f"{names.REUSED_BY}{info.parent_run_id}", info.sweep_id)
