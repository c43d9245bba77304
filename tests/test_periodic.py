"""The background ticker of the heartbeat, the monitors and the sweep watch."""

from __future__ import annotations

import logging
import time

import pytest

from sweep.tracking.periodic import Periodic


def test_a_failing_tick_is_said_once_and_the_thread_ticks_on(caplog: pytest.LogCaptureFixture) -> None:
    """A monitor's error (a GPU counter torch cannot read) ended its thread, silently."""
    ticks: list[int] = []

    def action() -> None:
        ticks.append(1)
        if len(ticks) <= 3:
            raise RuntimeError("Invalid device argument\nmore detail")

    ticker = Periodic(action, 0.01, "test-ticker")
    with caplog.at_level(logging.WARNING, logger="sweep"):
        ticker.start()
        deadline = time.monotonic() + 10
        while len(ticks) < 6:
            assert time.monotonic() < deadline, "the thread stopped ticking"
            time.sleep(0.01)
        ticker.stop()
    assert [r.getMessage() for r in caplog.records] == ["test-ticker: RuntimeError: Invalid device argument"]
