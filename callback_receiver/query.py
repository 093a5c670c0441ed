"""Reading the provider's redirect query: strictly, before anything is looked up.

A callback is `?code=…&state=…` or `?error=…[&error_description=…]&state=…`
(RFC 6749 §4.1.2); other parameters (Keap's `scope`, `error_uri`) are ignored.
Anything else, a repeated parameter, an oversized or non-printable value, is
refused without touching a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.datastructures import QueryParams

_MAX_LENGTH = {"code": 2048, "state": 200, "error": 100, "error_description": 500}
_VISIBLE = re.compile(r"^[\x20-\x7e]*$")
_NO_SPACE = re.compile(r"^[\x21-\x7e]+$")


class MalformedCallback(ValueError):
    """The query is not an OAuth 2.0 authorization response."""


@dataclass(frozen=True)
class Callback:
    """A well-formed authorization response."""

    state: str
    code: str | None = None
    error: str | None = None
    error_description: str | None = None

    def used_value(self) -> str:
        """What makes this answer single-use: its code, or for a refusal its error."""
        return self.code if self.code is not None else f"error:{self.error}"

    def run_input(self) -> dict[str, str]:
        """The values to resume the run with (the fields of the run's answer form)."""
        fields = {
            "code": self.code,
            "state": self.state,
            "error": self.error,
            "error_description": self.error_description,
        }
        return {key: value for key, value in fields.items() if value is not None}


def read_callback(params: QueryParams) -> Callback:
    """Check and read a callback query.

    Raises:
        MalformedCallback: The query is not a usable authorization response.
    """
    values: dict[str, str] = {}
    for name, limit in _MAX_LENGTH.items():
        given = params.getlist(name)
        if len(given) > 1:
            raise MalformedCallback(f"'{name}' appears more than once")
        if not given:
            continue
        value = given[0]
        if len(value) > limit or not _VISIBLE.match(value):
            raise MalformedCallback(f"'{name}' is too long or holds unexpected characters")
        if value.strip():
            values[name] = value.strip()
    state = values.get("state")
    if not state or not _NO_SPACE.match(state):
        raise MalformedCallback("the 'state' is missing")
    code, error = values.get("code"), values.get("error")
    if bool(code) == bool(error):
        raise MalformedCallback("it must carry either a 'code' or an 'error'")
    if code is not None and not _NO_SPACE.match(code):
        raise MalformedCallback("the 'code' holds unexpected characters")
    return Callback(
        state=state, code=code, error=error, error_description=values.get("error_description")
    )
