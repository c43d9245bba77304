"""Find sweeps and their variant runs in MLflow: the reading side of tracking, shared by the
report, the network comparison and the end of a sweep.

Runs are found only through the names in `sweep.tracking.names`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweep.errors import ConfigError
from sweep.tracking import names
from sweep.tracking.credentials import redact

DEFAULT_EXPERIMENT = "freeze-sweep"
SEARCH_PAGE = 1000  # MLflow's largest page for search_runs on every store


@dataclass(frozen=True)
class SweepRef:
    """A sweep as the report knows it: its parent run, and the folder it ran in (maybe elsewhere)."""

    sweep_id: str
    parent_run_id: str
    experiment_id: str
    sweep_dir: str | None


def find_sweeps(client: MlflowClient, experiment: str, sweep_ids: Sequence[str] = ()) -> list[SweepRef]:
    """The named sweeps (the latest parent run of each id), or the latest sweep when none is named."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(
            f"--experiment {experiment}: no such experiment at {redact(client.tracking_uri)}; "
            "run `freeze-sweep -m` first or pass --experiment"
        )
    experiment_id = found.experiment_id
    if not sweep_ids:
        latest = _parents(client, experiment_id, max_results=1)
        if not latest:
            raise ConfigError(
                f"no sweep in experiment {experiment!r} at {redact(client.tracking_uri)}: run `freeze-sweep -m`"
            )
        return [sweep_ref(latest[0])]
    refs = []
    for sweep_id in dict.fromkeys(sweep_ids):
        if "'" in sweep_id or "`" in sweep_id:
            raise ConfigError(f"--sweep {sweep_id}: a sweep id has no quotes; it is the sweep folder's name")
        parents = _parents(client, experiment_id, sweep_id, max_results=1)
        if not parents:
            recent = ", ".join(r.data.tags.get(names.SWEEP_ID, "?") for r in _parents(client, experiment_id))
            raise ConfigError(
                f"--sweep {sweep_id}: unknown sweep in experiment {experiment!r}; recent sweeps: {recent or 'none'}"
            )
        refs.append(sweep_ref(parents[0]))
    return refs


def sweep_of_parent(client: MlflowClient, parent_run_id: str) -> SweepRef:
    try:
        return sweep_ref(client.get_run(parent_run_id))
    except MlflowException:
        raise ConfigError(f"no MLflow run {parent_run_id} at {redact(client.tracking_uri)}") from None


def variant_runs(client: MlflowClient, sweep: SweepRef) -> list[Run]:
    """The variant runs of one sweep: the children of its parent run, and the finished runs of
    earlier sweeps that it reused instead of retraining (tagged `sweep.reused_by.<parent>`)."""
    children = _search(client, [sweep.experiment_id], f"tags.`{names.PARENT_RUN_ID}` = '{sweep.parent_run_id}'")
    reused_tag = f"{names.REUSED_BY}{sweep.parent_run_id}"
    reused = _search(client, [sweep.experiment_id], f"tags.`{reused_tag}` = '{sweep.sweep_id}'")
    return children + [run for run in reused if run.info.run_id not in {c.info.run_id for c in children}]


def _parents(client: MlflowClient, experiment_id: str, sweep_id: str | None = None, max_results: int = 10) -> list[Run]:
    query = f"tags.`{names.ROLE}` = '{names.ROLE_PARENT}'"
    if sweep_id is not None:
        query += f" and tags.`{names.SWEEP_ID}` = '{sweep_id}'"
    return list(client.search_runs([experiment_id], query, max_results=max_results, order_by=["start_time DESC"]))


def _search(client: MlflowClient, experiment_ids: Iterable[str], query: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs(list(experiment_ids), query, max_results=SEARCH_PAGE, page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


def sweep_ref(parent: Run) -> SweepRef:
    tags = parent.data.tags
    return SweepRef(
        sweep_id=tags.get(names.SWEEP_ID, parent.info.run_id),
        parent_run_id=parent.info.run_id,
        experiment_id=parent.info.experiment_id,
        sweep_dir=tags.get(names.SWEEP_DIR),
    )
