"""One background thread that calls an action every few seconds until stopped: the heartbeat,
the resource sampler and the results.csv follower all tick this way."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Periodic:
    def __init__(self, action: Callable[[], None], interval_s: float, name: str) -> None:
        self.action, self.interval_s = action, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float | None = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.action()
