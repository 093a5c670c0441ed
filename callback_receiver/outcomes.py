"""What a callback can lead to: the outcome, its HTTP status, and what the person is told."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """The result of one callback."""

    AUTHORIZED = "authorized"
    REFUSED = "refused"
    EXPIRED = "expired"
    ALREADY_USED = "already-used"
    ENDED = "ended"
    UNKNOWN = "unknown"
    INVALID = "invalid"
    NOT_READY = "not-ready"
    KEY_RETIRED = "key-retired"
    BUSY = "busy"
    WORKING = "working"

    @property
    def status_code(self) -> int:
        """The HTTP status of the page."""
        return _STATUS[self]


_STATUS = {
    Outcome.AUTHORIZED: 200,
    Outcome.REFUSED: 200,
    Outcome.EXPIRED: 410,
    Outcome.ALREADY_USED: 409,
    Outcome.ENDED: 409,
    Outcome.UNKNOWN: 404,
    Outcome.INVALID: 400,
    Outcome.NOT_READY: 503,
    Outcome.KEY_RETIRED: 410,
    Outcome.BUSY: 429,
    Outcome.WORKING: 503,
}


@dataclass(frozen=True)
class CallbackResult:
    """An outcome and the safe details the page may show.

    Attributes:
        outcome: What happened.
        instance_name: The instance the authorization is for, when known.
        flow_run_id: The run concerned, when known.
        detail: A short reason built by the receiver (never a request value).
        retry_after: Seconds after which a reload may succeed (busy pages).
    """

    outcome: Outcome
    instance_name: str | None = None
    flow_run_id: str | None = None
    detail: str | None = None
    retry_after: float | None = None
