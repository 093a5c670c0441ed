"""Bounds on the receiver's work: callbacks in progress, and requests per client address."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class ClientRateLimiter:
    """A token bucket per client address: `burst` requests at once, then `per_second`.

    The table of addresses is bounded (the least recently seen is forgotten first),
    so a flood of addresses cannot grow memory without end.

    Args:
        burst: Requests a client may make at once.
        per_second: Requests a client regains per second.
        max_clients: Addresses remembered at most.
        clock: A monotonic clock (tests).
    """

    def __init__(
        self,
        *,
        burst: int = 20,
        per_second: float = 1.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or per_second <= 0 or max_clients < 1:
            raise ValueError("burst, per_second and max_clients must be positive.")
        self._burst = burst
        self._per_second = per_second
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, client: str) -> float | None:
        """Take one request for `client`: None when allowed, else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.pop(client, None) or _Bucket(float(self._burst), now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._per_second)
        bucket.updated = now
        self._buckets[client] = bucket
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self._per_second


class InProgressLimit:
    """At most `limit` callbacks handled at once; beyond, the caller answers 429 at once.

    Not a queue: a person reloading later is better served than a request held
    while Prefect is slow.
    """

    def __init__(self, limit: int = 32) -> None:
        if limit < 1:
            raise ValueError("limit must be positive.")
        self.limit = limit
        self.in_progress = 0

    def try_enter(self) -> bool:
        """Take a place; False when every place is taken."""
        if self.in_progress >= self.limit:
            return False
        self.in_progress += 1
        return True

    def leave(self) -> None:
        """Give a place back."""
        self.in_progress -= 1


def retry_after_header(seconds: float) -> str:
    """A `Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
