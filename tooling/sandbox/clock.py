"""Time for the sandbox: an injectable clock, so tests can expire codes without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]
"""A clock returns the current time as seconds since the epoch, like `time.time`."""


def system_clock() -> float:
    """Return the real current time, in seconds since the epoch."""
    return time.time()


class ManualClock:
    """A clock that only moves when told to; for tests and benchmarks.

    Example:
        ```python
        clock = ManualClock()
        app = create_app(SandboxConfig(), clock=clock)
        clock.advance(601)  # every code issued before is now expired
        ```
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        """Start the clock at `start` seconds since the epoch."""
        self._now = start

    def __call__(self) -> float:
        """Return the clock's current time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`."""
        self._now += seconds


def iso_utc(timestamp: float, *, milliseconds: bool = False) -> str:
    """Format an epoch timestamp the way the platform does, e.g. `2017-08-07T18:46:38Z`.

    Args:
        timestamp: Seconds since the epoch.
        milliseconds: Add milliseconds (`2017-08-07T18:46:38.123Z`).
    """
    moment = datetime.fromtimestamp(timestamp, UTC)
    if milliseconds:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
