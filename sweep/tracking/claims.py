"""A variant (config hash) is trained by one worker at a time, across processes and machines.

A worker claims a variant by creating its run and checking that no other live run of that hash
exists (`claim_variant`); a finished variant is reused, an interrupted one resumed from its
checkpoint, leftovers closed as superseded. A variant a budget stopped (sweep/budget/) is finished
only up to the training time it had: a job that wants more continues it (`is_done`).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweep.checkpoints import config_hash_of
from sweep.tracking import names
from sweep.tracking.owners import is_alive, owner_tags
from sweep.tracking.parent_run import SweepInfo
from sweep.tracking.stale_runs import close_stale_runs

log = logging.getLogger("sweep")

CLAIM_POLL_S = 10.0
CLAIM_SETTLE_S = 60.0  # a live run not yet confirmed this long after its start holds the variant all the same


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
    import torch  # here: seconds to import, and only a resume reads a checkpoint

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


def is_done(client: MlflowClient, run: Run, until_s: float | None) -> bool:
    """Whether `run` holds all a job that trains its variant until `until_s` seconds of training (a
    budget's rung allotment; None: to its last epoch) would train. A FINISHED run does, except one a
    budget stopped (`sweep.stopped_at_rung`): it has epochs to go, so it is done only for a rung
    whose allotment it has trained already (a re-run of its sweep, where the stop stands); a plain
    sweep, or a budget that gives it more, continues it from its last.pt in the same run."""
    if run.info.status != "FINISHED":
        return False
    if names.STOPPED_AT_RUNG not in run.data.tags:
        return True
    return until_s is not None and training_time_s(client, run.info.run_id) >= until_s


def training_time_s(client: MlflowClient, run_id: str) -> float:
    """The run's training time so far: its `epoch_time_s`, summed (what a budget allots)."""
    return sum(m.value for m in client.get_metric_history(run_id, names.EPOCH_TIME))


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
    until_s: float | None = None,
) -> Claim:
    """Claim a variant for training, or say why not.

    The claim is the variant's run itself: create it, then look for other live runs of the same
    config hash. If there are, withdraw (delete ours) and retry after a random pause. With a
    store that serialises writes, two workers cannot both find themselves alone: whichever
    looked second would have seen the other's run. A held variant is waited for (`wait`), or
    left to its holder. `until_s`: how far the job trains (`is_done`).
    """
    while True:
        close_stale_runs(client, [experiment_id], f"tags.{names.CONFIG_HASH} = '{config_hash}'")
        runs = _variant_runs(client, experiment_id, config_hash)
        done = {r.info.run_id for r in runs if is_done(client, r, until_s)}
        finished = [r for r in runs if r.info.run_id in done]
        if finished and not rerun:
            return Claim("finished", finished[0])
        live = [r for r in runs if is_alive(r)]
        if live:
            holder = _holder(live)
            if holder is None:  # only claims still being decided: one of them may withdraw
                time.sleep(random.uniform(0.2, 1.0))
                continue
            if not wait:
                return Claim("held", holder)
            log.info(
                "Waiting for %s: run %s (%s) is training it; checking every %.0f s",
                run_name,
                holder.info.run_id,
                holder.data.tags.get(names.OWNER, "?"),
                poll_s,
            )
            _wait_until_not_alive(client, holder.info.run_id, poll_s)
            continue
        mine = client.create_run(experiment_id, run_name=run_name, tags={**tags, **owner_tags()})
        rivals = [r for r in _variant_runs(client, experiment_id, config_hash) if r.info.run_id != mine.info.run_id]
        live_rivals = [r for r in rivals if is_alive(r)]
        if live_rivals:
            holder = live_rivals[0].info.run_id
            withdraw(client, mine.info.run_id, holder, f"claim withdrawn: run {holder} holds the variant")
            time.sleep(random.uniform(0.2, 2.0))
            continue
        unfinished = [r for r in runs if r.info.run_id not in done]
        return _train_or_resume(client, mine, unfinished, rerun, tags)


def _holder(live: list[Run], now_ms: float | None = None) -> Run | None:
    """The live run that holds the variant: one whose claim won (`sweep.claimed`). A run still
    deciding its claim may withdraw in the next moment, so it is named holder only if it has been
    live for CLAIM_SETTLE_S (a run of a version without the tag); before that, None: look again."""
    now_ms = now_ms if now_ms is not None else time.time() * 1000
    confirmed = [r for r in live if names.CLAIMED in r.data.tags]
    settled = [r for r in live if now_ms - r.info.start_time > CLAIM_SETTLE_S * 1000]
    return (confirmed or settled or [None])[0]


def _wait_until_not_alive(client: MlflowClient, run_id: str, poll_s: float) -> None:
    while is_alive(client.get_run(run_id)):
        time.sleep(poll_s)


def _train_or_resume(client: MlflowClient, mine: Run, unfinished: list[Run], rerun: bool, tags: dict) -> Claim:
    """We hold the variant. Continue the newest resumable run in place of our fresh one (it is
    made live before ours is withdrawn, so the variant is never unclaimed), else train in ours.
    A continued run joins this sweep, and keeps its output folder (its checkpoint is there); a
    stopped one is no longer stopped (it trains on: the report must not call it STOPPED)."""
    for run in unfinished if not rerun else []:
        point = resume_point(run)
        if point is None:
            continue
        client.update_run(run.info.run_id, status="RUNNING")
        for key, value in {**tags, **owner_tags(), names.CLAIMED: "true"}.items():
            if key != names.OUTPUT_DIR:
                client.set_tag(run.info.run_id, key, value)
        reason = ended(run)
        client.set_tag(run.info.run_id, names.RESUMED_AFTER, reason[:5000])
        client.set_tag(run.info.run_id, names.CLOSED_REASON, "")
        # the interruption (or the budget's stop) is history now, not the outcome; the run is RUNNING first,
        # so a kill in between never leaves it FINISHED without the stop that says it has epochs to go
        for key in (names.ERROR, names.ERROR_TRACEBACK, names.STOPPED_AT_RUNG, names.STOPPED_REASON):
            if key in run.data.tags:
                client.delete_tag(run.info.run_id, key)
        withdraw(client, mine.info.run_id, run.info.run_id, f"replaced by the resumed run {run.info.run_id}")
        others = [r for r in unfinished if r.info.run_id != run.info.run_id]
        return Claim("train", client.get_run(run.info.run_id), point[1], others)
    client.set_tag(mine.info.run_id, names.CLAIMED, "true")
    return Claim("train", client.get_run(mine.info.run_id), 0, unfinished)


def ended(run: Run) -> str:
    """How a run's previous attempt ended, for the `sweep.resumed_after` of the run that continues it."""
    rung = run.data.tags.get(names.STOPPED_AT_RUNG)
    if rung is None:
        return run.data.tags.get(names.CLOSED_REASON) or f"ended {run.info.status}"
    return f"stopped by the budget at rung {rung}: {run.data.tags.get(names.STOPPED_REASON, '')}".rstrip(": ")


def withdraw(client: MlflowClient, run_id: str, by_run_id: str, reason: str) -> None:
    """A run given up before it trained ends KILLED, saying why, then is deleted: a deleted run
    keeps its status, and must not read RUNNING for ever. Marked superseded first, so no other
    worker takes it for a leftover to resume in the moment before it is deleted."""
    client.set_tag(run_id, names.SUPERSEDED_BY, by_run_id)
    client.set_tag(run_id, names.CLOSED_REASON, reason)
    client.set_terminated(run_id, "KILLED")
    client.delete_run(run_id)


def supersede(client: MlflowClient, runs: list[Run], by_run_id: str) -> None:
    """Close unfinished leftovers (a stopped one among them) explicitly, pointing at the run that replaces them."""
    for run in runs:
        if run.info.status != "FINISHED" or names.STOPPED_AT_RUNG in run.data.tags:
            client.set_tag(run.info.run_id, names.SUPERSEDED_BY, by_run_id)
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")


def mark_reused(client: MlflowClient, run: Run, info: SweepInfo | None) -> None:
    """A finished (or held) run of another sweep belongs to this sweep's results too."""
    if info is not None and run.data.tags.get(names.PARENT_RUN_ID) != info.parent_run_id:
        client.set_tag(run.info.run_id, f"{names.REUSED_BY}{info.parent_run_id}", info.sweep_id)
