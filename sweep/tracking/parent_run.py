"""A sweep's parent run, held by the process that launched the sweep.

`SweepInfo` (sweep.json in the sweep folder) tells every job, whatever launcher started it, which
parent run it belongs to. The launching process beats the parent's heartbeat until the sweep
ends, then ends it FINISHED or FAILED; a signal ends it KILLED.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.tracking import MlflowClient

from sweep.files import write_atomic
from sweep.tracking import names
from sweep.tracking.credentials import redact
from sweep.tracking.owners import Heartbeat, owner_tag, owner_tags
from sweep.tracking.stale_runs import end_runs_killed
from sweep.tracking.sweeps import sweep_of_parent, variant_runs

SWEEP_FILE = "sweep.json"  # in the sweep folder: tells jobs (any launcher) their parent run


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
    runs = variant_runs(client, sweep_of_parent(client, info.parent_run_id))
    own = [r for r in runs if r.data.tags.get(names.PARENT_RUN_ID) == info.parent_run_id]
    status = "FAILED" if jobs_failed or any(r.info.status != "FINISHED" for r in own) else "FINISHED"
    client.set_terminated(info.parent_run_id, status)
    return status


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
