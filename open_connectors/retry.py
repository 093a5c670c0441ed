"""When and how long to wait before sending a request again.

Only transient failures are retried: connection errors, read timeouts and the
statuses 408, 429, 502, 503 and 504. Delays grow exponentially, are capped, carry
jitter, and give way to the server's `Retry-After` (seconds or an HTTP date), itself
capped so that a hostile or broken server cannot park a run for hours.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})
# Statuses that say the request was not processed, so even a non-idempotent
# request (POST /instances) may be sent again.
NOT_PROCESSED_STATUSES = frozenset({408, 429, 503})
# Errors raised before the request left this machine: safe to resend whatever it was.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# Statuses after which it is unknown whether a non-idempotent request was processed
# (a gateway gave up, or the backend failed mid-way): never send it again.
AMBIGUOUS_STATUSES = frozenset({500, 502, 504})
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    *NOT_SENT_ERRORS,
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """A capped exponential backoff with jitter that honours `Retry-After`.

    Attributes:
        max_attempts: Attempts in all, the first one included (1 disables retries).
        base_delay: Seconds before the first retry; doubled at each further retry.
        max_delay: Cap of the computed backoff, in seconds.
        max_retry_after: Cap of a server-requested `Retry-After` wait, in seconds.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    _random: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def should_retry_status(self, status_code: int, *, idempotent: bool) -> bool:
        """Whether an answer with this status may be retried."""
        statuses = TRANSIENT_STATUSES if idempotent else NOT_PROCESSED_STATUSES
        return status_code in statuses

    def should_retry_error(self, error: Exception, *, idempotent: bool) -> bool:
        """Whether a transport error may be retried."""
        errors = TRANSIENT_ERRORS if idempotent else NOT_SENT_ERRORS
        return isinstance(error, errors)

    def is_ambiguous_error(self, error: Exception) -> bool:
        """Whether a transport error leaves it unknown if the request was processed.

        Everything but a failure to connect or to get a pooled connection: the
        request may have reached the platform (read timeout, write error, lost
        connection).
        """
        return isinstance(error, httpx.TransportError) and not isinstance(error, NOT_SENT_ERRORS)

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry_number` (1 for the first retry)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        backoff = min(self.base_delay * 2 ** (retry_number - 1), self.max_delay)
        return self.jitter(backoff)

    def jitter(self, delay: float) -> float:
        """Randomize a delay within [delay/2, delay] so that clients do not retry in step."""
        return self._random.uniform(delay / 2, delay)


def look_up_delays(total_seconds: float, *, first: float = 1.0, cap: float = 8.0) -> list[float]:
    """Waits between look-ups of an instance after an ambiguous answer, summing to `total_seconds`.

    Doubling from `first` up to `cap`; the last wait is what is left. Deterministic,
    so the number of look-ups is known in advance: `1 + len(look_up_delays(...))`.
    """
    delays: list[float] = []
    left = max(total_seconds, 0.0)
    step = first
    while left > 1e-9:
        wait = min(step, cap, left)
        delays.append(wait)
        left -= wait
        step *= 2
    return delays


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read a `Retry-After` header: delay seconds or an HTTP date. None when absent or invalid.

    Never raises: absurd values (a date centuries ahead, thousands of digits) come
    back as `inf` for the caller's cap to clamp, malformed ones as None.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)  # thousands of digits give inf, never an error
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
    except OverflowError:
        return float("inf")
    except (TypeError, ValueError, IndexError):
        return None
