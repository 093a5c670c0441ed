"""The OAuth 2.0 `state` of an authorization and the reading of the provider's answer.

The state binds an answer to the authorization that asked for it. It is derived,
not stored: `<id>.<mac>`, where `id` names the authorization (the Prefect flow run
id) and `mac` is an HMAC-SHA256 of it under the OAuth app's secret. So the same
authorization always sends the same state (a re-executed step after a resume
cannot invent a new one), nobody without the secret can forge one, and a callback
receiver can find the authorization from the state alone and check it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

from pydantic import SecretStr

from open_connectors.errors import (
    AuthorizationDeniedError,
    InvalidAuthorizationAnswerError,
    StateMismatchError,
)

_STATE_LABEL = b"open-connectors-authorization-state:v1:"
_STATE_PATTERN = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")
# RFC 6749 appendix A.11: a code is made of visible ASCII characters.
_CODE_PATTERN = re.compile(r"^[\x21-\x7e]{1,2048}$")
_ERROR_PATTERN = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,200}$")
MAX_ANSWER_LENGTH = 8192


def derive_state(authorization_id: UUID, key: SecretStr | str) -> str:
    """The state of an authorization: stable for an id and key, unguessable without the key."""
    secret = key.get_secret_value() if isinstance(key, SecretStr) else key
    mac = hmac.new(secret.encode(), _STATE_LABEL + authorization_id.hex.encode(), hashlib.sha256)
    return f"{authorization_id.hex}.{base64.urlsafe_b64encode(mac.digest()).decode().rstrip('=')}"


def authorization_id_from_state(state: str | None) -> UUID | None:
    """The authorization id a state names, or None when it is not of this project's form."""
    match = _STATE_PATTERN.match(state or "")
    return UUID(match.group(1)) if match else None


def state_matches(state: str | None, expected: str) -> bool:
    """Compare a received state with the expected one in constant time."""
    return state is not None and hmac.compare_digest(state.encode(), expected.encode())


@dataclass(frozen=True)
class AuthorizationGrant:
    """An accepted answer: the authorization code and the state it came with.

    Attributes:
        code: The single-use authorization code.
        state_checked: Whether the answer carried the state (a bare code pasted into
            the Prefect UI carries none; the person is then trusted through Prefect).
    """

    code: SecretStr
    state_checked: bool


def read_authorization_answer(
    *,
    expected_state: str,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> AuthorizationGrant:
    """Read the provider's answer, as typed or pasted by a person or sent by a callback.

    `code` may hold the bare code, the whole redirect URL, or its query string: the
    values found there fill the other fields. A given state must equal
    `expected_state`; a bare code without any state is accepted, because only
    somebody trusted by the Prefect server can resume the run with it.

    Raises:
        AuthorizationDeniedError: The answer carries an `error` (e.g. `access_denied`).
        StateMismatchError: The answer's state is not the expected one.
        InvalidAuthorizationAnswerError: Neither a usable code nor an error.
    """
    fields = {
        "code": _clean(code),
        "state": _clean(state),
        "error": _clean(error),
        "error_description": _clean(error_description),
    }
    if fields["code"] and _looks_like_redirect(fields["code"]):
        from_url = _redirect_parameters(fields.pop("code") or "")
        for name, value in from_url.items():
            if fields.get(name) and value and fields[name] != value and name == "state":
                raise StateMismatchError(
                    "The pasted redirect URL and the state field disagree; paste only the "
                    "redirect URL of this run's consent link."
                )
            fields[name] = fields.get(name) or value
    received_state = fields.get("state")
    if received_state is not None and not state_matches(received_state, expected_state):
        raise StateMismatchError(
            "The answer's state does not match this authorization: it comes from another "
            "consent link or was altered. No instance was created; open this run's own link."
        )
    if fields.get("error"):
        error_code = fields["error"] or ""
        if not _ERROR_PATTERN.match(error_code):
            raise InvalidAuthorizationAnswerError("The answer's error field is malformed.")
        description = fields.get("error_description")
        if description is not None and not _ERROR_PATTERN.match(description[:200]):
            description = None
        words = f"{error_code}: {description[:200]}" if description else error_code
        raise AuthorizationDeniedError(
            f"The provider reported that authorization was refused ({words}). No instance was "
            "created; start a new run if this was a mistake.",
            error=error_code,
            description=description,
        )
    grant_code = fields.get("code")
    if not grant_code:
        raise InvalidAuthorizationAnswerError(
            "The answer holds neither an authorization code nor an error. Paste the whole "
            "address of the page the provider redirected to (or its code) into the Code field."
        )
    if not _CODE_PATTERN.match(grant_code):
        raise InvalidAuthorizationAnswerError(
            "The authorization code is malformed: it must be visible ASCII without spaces, at "
            "most 2048 characters. Paste it again, or paste the whole redirect address."
        )
    return AuthorizationGrant(code=SecretStr(grant_code), state_checked=received_state is not None)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if len(text) > MAX_ANSWER_LENGTH:
        raise InvalidAuthorizationAnswerError(
            f"The answer is longer than {MAX_ANSWER_LENGTH} characters; paste only the "
            "redirect address or the code."
        )
    return text or None


def _looks_like_redirect(value: str) -> bool:
    return "://" in value or value.startswith("?") or "code=" in value or "error=" in value


def _redirect_parameters(value: str) -> dict[str, str | None]:
    """The OAuth parameters of a redirect URL (or of a bare query string)."""
    query = urlsplit(value).query if "://" in value else value.lstrip("?")
    found: dict[str, str | None] = {}
    for name, item in parse_qsl(query, keep_blank_values=True):
        if name in ("code", "state", "error", "error_description"):
            if name in found:
                raise InvalidAuthorizationAnswerError(
                    f"The redirect address carries '{name}' twice; paste the address exactly "
                    "as the browser shows it."
                )
            found[name] = item.strip() or None
    if not found:
        raise InvalidAuthorizationAnswerError(
            "The pasted address carries no code, state or error. Paste the address of the "
            "page the provider redirected to after you approved."
        )
    return found
