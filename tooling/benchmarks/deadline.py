"""A global deadline: every benchmark stops when it passes and reports what it has."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class DeadlineReached(Exception):
    """The benchmark's time is up; it reports what it measured so far."""


class Deadline:
    """A point in time (monotonic clock) that a benchmark must not pass.

    Args:
        seconds: Seconds from now.
    """

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.end = self.started + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self.end

    def elapsed(self) -> float:
        """Seconds since the deadline was set."""
        return time.monotonic() - self.started

    def within(self, seconds: float) -> Deadline:
        """A deadline `seconds` from now, or this one if it comes first."""
        child = Deadline(0)
        child.end = min(self.end, time.monotonic() + seconds)
        return child

    def check(self, what: str = "") -> None:
        """Raise `DeadlineReached` when the deadline has passed.

        Raises:
            DeadlineReached: The deadline has passed.
        """
        if self.expired():
            raise DeadlineReached(f"The deadline passed{f' ({what})' if what else ''}.")

    async def run(self, awaitable: Awaitable[T], what: str = "") -> T:
        """Await `awaitable`, cancelling it when the deadline passes.

        Raises:
            DeadlineReached: The deadline passed first.
        """
        try:
            return await asyncio.wait_for(awaitable, timeout=self.remaining())
        except TimeoutError:
            raise DeadlineReached(f"The deadline passed{f' ({what})' if what else ''}.") from None
