"""One background thread that calls an action every few seconds until stopped: the heartbeat,
the resource sampler, the results.csv follower and the sweep watch all tick this way. A tick that
raises is said once and the thread ticks on: a monitor never ends a training, nor stops silently."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("sweep")


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
        said = ""
        while not self._stop.wait(self.interval_s):
            try:
                self.action()
            except Exception as error:  # one failed tick must not end the thread: the next one retries
                message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                if message != said:  # once, not every tick
                    log.warning("%s: %s", self._thread.name, message)
                said = message
