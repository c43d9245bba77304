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

REUSED_BY = "sweep.reused_by."  # + parent run id: marks a finished run reused by a later sweep
SUPERSEDED_BY = "superseded_by"


@dataclass
class PreviousRuns:
    finished: Run | None = None
    resumable: Run | None = None
    leftovers: list[Run] = field(default_factory=list)


def last_checkpoint(run: Run) -> Path | None:
    save_dir = run.data.tags.get(names.OUTPUT_DIR)
    last = Path(save_dir) / "weights" / "last.pt" if save_dir else None
    return last if last and last.is_file() else None


def find_previous(client: MlflowClient, experiment_id: str, config_hash: str) -> PreviousRuns:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{names.CONFIG_HASH} = '{config_hash}' and tags.`{names.ROLE}` = '{names.ROLE_VARIANT}'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    previous = PreviousRuns()
    for run in runs:
        if SUPERSEDED_BY in run.data.tags:
            continue
        if run.info.status == "FINISHED":
            previous.finished = previous.finished or run
        elif previous.resumable is None and last_checkpoint(run) is not None:
            previous.resumable = run
        else:
            previous.leftovers.append(run)
    return previous


def supersede(client: MlflowClient, runs: list[Run], by_run_id: str) -> None:
    """Close unfinished leftovers explicitly, pointing at the run that replaces them."""
    for run in runs:
        if run.info.status != "FINISHED":
            client.set_tag(run.info.run_id, SUPERSEDED_BY, by_run_id)
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")


def mark_reused(client: MlflowClient, run: Run, parent_run_id: str, sweep_id: str) -> None:
    client.set_tag(run.info.run_id, f"{REUSED_BY}{parent_run_id}", sweep_id)
