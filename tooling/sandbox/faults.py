"""Fault injection rules: which requests to disturb, and how.

A rule names a method (or `*`) and a path (exact, or a prefix when it ends with `*`)
and holds a queue of actions: `status` (answer without processing), `reset` (close
without an answer), `commit_then_drop` (process, then close without the answer),
`commit_then_status` (process, then answer a given status, e.g. a gateway's 504),
`commit_then_delay` (process, then hold the answer N seconds: a client read timeout
fires while the write is done), `delay` (wait, then process), `provider_forbidden`
(a hub call's 403 with a `providerMessage`), `pass`. Each matching request takes the
next action of the first (oldest) rule that still has some; a rule whose actions are
used up no longer applies but stays listed (with its hit count) until the rules are
cleared. Admin paths are never disturbed. The rules also carry the added latency of
every non-admin request, and the platform's quirks (`PlatformQuirks`: lists lagging
behind writes, the `tags[]` filter ignored, a next-page token on the last page).

Configured over `/_sandbox/faults`, `/_sandbox/latency` and `/_sandbox/quirks`
(`admin_faults.py`); carried out by `fault_asgi.py`, called from
`RequestJournalMiddleware`, and by the platform and hub routes (quirks).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from tooling.sandbox.paths import is_admin_path

MAX_DELAY_SECONDS = 300.0
MAX_LATENCY_SECONDS = 60.0
MAX_ACTIONS_PER_RULE = 10_000

# RFC 9110 tokens: what a method or a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Framing headers are the server's: a wrong one would turn an answer into a broken one.
_RESERVED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _StatusAnswer(_Action):
    """The answer of a status action.

    Attributes:
        status: The HTTP status (200-599).
        headers: Extra response headers, e.g. `{"Retry-After": "2"}`.
        body: The JSON body; None for the platform's error body saying "Injected fault".
    """

    status: int = Field(ge=200, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: JsonValue = None

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"invalid header name {name[:40]!r}")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the server")
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"invalid value for header {name!r}")
        return headers


class StatusAction(_StatusAnswer):
    """Answer at once with this status, without processing the request."""

    type: Literal["status"]


class CommitThenStatusAction(_StatusAnswer):
    """Process the request normally, then answer this status instead of the real answer.

    What a gateway does when it gives up (504) while the backend goes on.
    """

    type: Literal["commit_then_status"]


class CommitThenDelayAction(_Action):
    """Process the request normally, then hold the real answer before sending it.

    Attributes:
        seconds: How long the processed request's answer is held.
    """

    type: Literal["commit_then_delay"]
    seconds: float = Field(ge=0, le=MAX_DELAY_SECONDS)


DEFAULT_FORBIDDEN_PROVIDER_MESSAGE = (
    '{"message":"Access to this resource is not allowed for this account.","code":"403"}'
)


class ProviderForbiddenAction(_Action):
    """Answer 403 as the platform does when the provider forbids the resource.

    Attributes:
        provider_message: The provider's words, as `providerMessage`.
    """

    type: Literal["provider_forbidden"]
    provider_message: str = Field(default=DEFAULT_FORBIDDEN_PROVIDER_MESSAGE, max_length=2000)


class ResetAction(_Action):
    """Close the connection without any answer, before processing the request."""

    type: Literal["reset"]


class CommitThenDropAction(_Action):
    """Process the request normally, then close the connection without the answer."""

    type: Literal["commit_then_drop"]


class DelayAction(_Action):
    """Wait, then process the request normally.

    Attributes:
        seconds: How long to wait before processing.
    """

    type: Literal["delay"]
    seconds: float = Field(ge=0, le=MAX_DELAY_SECONDS)


class PassAction(_Action):
    """Process the request normally (a placeholder in a sequence of actions)."""

    type: Literal["pass"]


FaultAction = Annotated[
    StatusAction
    | ResetAction
    | CommitThenDropAction
    | CommitThenStatusAction
    | CommitThenDelayAction
    | DelayAction
    | ProviderForbiddenAction
    | PassAction,
    Field(discriminator="type"),
]


MAX_LISTING_LAG_SECONDS = 600.0


class PlatformQuirks(BaseModel):
    """Ways the real platform is harder than the documentation: `/_sandbox/quirks`.

    Attributes:
        listing_lag_seconds: For this long after an instance is created or updated,
            `GET /instances` lists leave it out, and `GET /instances/{id}` still
            shows the tags it had before a `PUT`/`PATCH` changed them.
        ignore_tags_filter: `GET /instances?tags[]=…` lists every instance.
        next_page_token_on_last_page: Hub pages always carry
            `elements-next-page-token`, the last one too, followed by an empty page
            (which carries a token as well).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    listing_lag_seconds: float = Field(default=0.0, ge=0, le=MAX_LISTING_LAG_SECONDS)
    ignore_tags_filter: bool = False
    next_page_token_on_last_page: bool = False


class FaultRuleSpec(BaseModel):
    """The body of `POST /_sandbox/faults`.

    Attributes:
        method: An HTTP method (any case), or `*` for any.
        path: A request path (no query string), or a prefix ending with `*`.
        actions: What the next matching requests get, in order.
    """

    model_config = ConfigDict(extra="forbid")

    method: str
    path: str
    actions: list[FaultAction] = Field(min_length=1, max_length=MAX_ACTIONS_PER_RULE)

    @field_validator("method")
    @classmethod
    def _valid_method(cls, method: str) -> str:
        if method != "*" and not _TOKEN.fullmatch(method):
            raise ValueError("must be an HTTP method or '*'")
        return method.upper()

    @field_validator("path")
    @classmethod
    def _valid_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with '/'")
        if "?" in path or "#" in path:
            raise ValueError("must not contain a query string or a fragment (never matched)")
        if "*" in path[:-1]:
            raise ValueError("'*' is only allowed at the end, as a prefix match")
        if is_admin_path(path.removesuffix("*")):
            raise ValueError("admin paths (/_sandbox/...) are never subject to faults")
        return path


def action_json(action: FaultAction) -> dict[str, Any]:
    """An action as the admin API shows it (the form it accepts)."""
    return action.model_dump(mode="json", exclude_none=True)


@dataclass
class FaultRule:
    """A rule and what is left of it.

    Attributes:
        id: The rule id, e.g. `rule-1`.
        method: An upper-case method, or `*`.
        path: An exact path, or a prefix ending with `*`.
        actions: The actions not used yet, next first.
        hits: How many requests took one of its actions.
    """

    id: str
    method: str
    path: str
    actions: deque[FaultAction]
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether a request (its path without query string) falls under this rule."""
        if self.method not in ("*", method):
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def as_json(self) -> dict[str, Any]:
        """The rule as `GET /_sandbox/faults` shows it."""
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "actions": [action_json(action) for action in self.actions],
            "hits": self.hits,
        }


class FaultRules:
    """The fault rules and added latency of one sandbox.

    Nothing here awaits, so each method is atomic within one event loop; callers still
    hold the state lock while changing or consuming rules, as the contract promises.
    """

    def __init__(self) -> None:
        """Start with no rules and no latency."""
        self._rules: list[FaultRule] = []
        self._next_number = 1
        self.latency_seconds = 0.0
        self.quirks = PlatformQuirks()

    @property
    def armed(self) -> bool:
        """Whether some rule still has actions (checked without the lock, as a fast path)."""
        return any(rule.actions for rule in self._rules)

    def add(self, spec: FaultRuleSpec) -> FaultRule:
        """Add a rule after the existing ones (so older rules win)."""
        rule = FaultRule(
            id=f"rule-{self._next_number}",
            method=spec.method,
            path=spec.path,
            actions=deque(spec.actions),
        )
        self._next_number += 1
        self._rules.append(rule)
        return rule

    def take(self, method: str, path: str) -> FaultAction | None:
        """Consume the next action for this request, or return None to serve it normally."""
        if is_admin_path(path):
            return None
        for rule in self._rules:
            if rule.actions and rule.matches(method, path):
                rule.hits += 1
                return rule.actions.popleft()
        return None

    def as_json(self) -> list[dict[str, Any]]:
        """Every rule, oldest first, with its remaining actions and hits."""
        return [rule.as_json() for rule in self._rules]

    def remove(self, rule_id: str) -> bool:
        """Remove one rule; return whether it existed."""
        kept = [rule for rule in self._rules if rule.id != rule_id]
        removed = len(kept) != len(self._rules)
        self._rules = kept
        return removed

    def clear(self) -> int:
        """Remove every rule, turn latency and quirks off; return how many rules there were."""
        count = len(self._rules)
        self._rules = []
        self.latency_seconds = 0.0
        self.quirks = PlatformQuirks()
        return count
