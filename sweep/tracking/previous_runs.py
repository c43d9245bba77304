"""What an earlier sweep already did for this exact variant (same config hash).

A FINISHED run is reused instead of retrained; an interrupted one (killed, preempted, crashed)
with a checkpoint on disk is resumed; older leftovers are marked superseded so that the store
ends with exactly one FINISHED run per variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweep.tracking import names


@dataclass
class PreviousRuns:
    finished: Run | None = None
    resumable: Run | None = None
    resume_epoch: int = 0  # epochs completed in the resumable run's last.pt (1-based, as logged)
    leftovers: list[Run] = field(default_factory=list)


def resume_point(run: Run) -> tuple[Path, int] | None:
    """The run's last.pt and the epochs it completed, if ultralytics can resume from it.

    A checkpoint stripped at the end of training (no optimizer state) cannot be resumed: its
    run died while finishing up, and is retrained rather than resumed.
    """
    import torch

    save_dir = run.data.tags.get(names.OUTPUT_DIR)
    last = Path(save_dir) / "weights" / "last.pt" if save_dir else None
    if last is None or not last.is_file():
        return None
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception:  # a checkpoint cut short by the kill itself
        return None
    if ckpt.get("optimizer") is None or ckpt.get("epoch", -1) < 0:
        return None
    return last, int(ckpt["epoch"]) + 1


def find_previous(client: MlflowClient, experiment_id: str, config_hash: str) -> PreviousRuns:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{names.CONFIG_HASH} = '{config_hash}' and tags.`{names.ROLE}` = '{names.ROLE_VARIANT}'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    previous = PreviousRuns()
    for run in runs:
        if names.SUPERSEDED_BY in run.data.tags:
            continue
        if run.info.status == "FINISHED":
            previous.finished = previous.finished or run
        elif previous.resumable is None and (point := resume_point(run)):
            previous.resumable, previous.resume_epoch = run, point[1]
        else:
            previous.leftovers.append(run)
    return previous


def supersede(client: MlflowClient, runs: list[Run], by_run_id: str) -> None:
    """Close unfinished leftovers explicitly, pointing at the run that replaces them."""
    for run in runs:
        if run.info.status != "FINISHED":
            client.set_tag(run.info.run_id, names.SUPERSEDED_BY, by_run_id)
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")


def mark_reused(client: MlflowClient, run: Run, parent_run_id: str, sweep_id: str) -> None:
    client.set_tag(run.info.run_id, f"{names.REUSED_BY}{parent_run_id}", sweep_id)
