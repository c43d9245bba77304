"""Who runs a run, and proof that it still does: owners and heartbeats.

Every run records its owner (host, pid, process start time) and a heartbeat. A RUNNING run is
alive while its owner (or its last heartbeat's writer) runs on this host, or while a heartbeat
written on another host is fresh (`STALE_AFTER_S`); `stale_runs.py` closes the others.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable

import psutil
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from sweep.tracking.credentials import redact
from sweep.tracking.periodic import Periodic

log = logging.getLogger("sweep")

HEARTBEAT_S = 10.0
STALE_AFTER_S = 90.0  # a heartbeat older than this means the owner is gone (owner on another host)
STALE_REASON = "owner"  # how a closed_reason set by `stale_runs.close_stale_runs` starts


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
