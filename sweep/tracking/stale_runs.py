"""Runs left RUNNING are ended, saying why: by the next sweep or report when their owner is gone
(kill -9, a lost node), or on the way out after a signal or a failure."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from mlflow.tracking import MlflowClient

from sweep.tracking import names
from sweep.tracking.credentials import redact
from sweep.tracking.owners import STALE_REASON, is_alive

log = logging.getLogger("sweep")


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


def end_runs_killed(client: MlflowClient, run_ids: Iterable[str], reason: str, status: str = "KILLED") -> None:
    """Best effort, on the way out after a signal (or a failure): the runs say KILLED and why."""
    for run_id in run_ids:
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, names.CLOSED_REASON, reason)
                client.set_terminated(run_id, status)
        except Exception as error:
            log.warning("run %s not closed: %s", run_id, redact(str(error).splitlines()[0] if str(error) else ""))
