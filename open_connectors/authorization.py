"""The OAuth 2.0 `state` of an authorization and the reading of the provider's answer.

The state binds an answer to the authorization that asked for it. It is derived,
not stored: `<id>.<key id>.<mac>`, where `id` names the authorization (the Prefect
flow run id), `key id` names the state key that signed it (a short public digest
of the key), and `mac` is an HMAC-SHA256 of both under that key. The key is the
project's own state key (`blocks.StateSigningKey`), never the OAuth client secret,
which the provider and the platform know too. So:

- the same authorization signed with the same key always sends the same state (a
  re-executed step after a resume cannot invent a new one);
- nobody without the key can forge one;
- a callback receiver finds the authorization from the state alone and checks it;
- after a key rotation, states signed with a previous key still verify while that
  key is kept, and a state signed with a key rotated out is told apart from a forgery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

from pydantic import SecretStr

from open_connectors.errors import (
    AuthorizationDeniedError,
    InvalidAuthorizationAnswerError,
    StateMismatchError,
    UnknownStateKeyError,
)

_STATE_LABEL = b"open-connectors-authorization-state:v2:"
_CODE_LABEL = b"open-connectors-used-code:v1:"
KEY_ID_LENGTH = 8
_STATE_PATTERN = re.compile(r"^([0-9a-f]{32})\.([0-9a-f]{8})\.([A-Za-z0-9_-]{43})$")
# RFC 6749 appendix A.11: a code is made of visible ASCII characters.
_CODE_PATTERN = re.compile(r"^[\x21-\x7e]{1,2048}$")
_ERROR_PATTERN = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,200}$")
MAX_ANSWER_LENGTH = 8192
USED_CODE_KEY_PREFIX = "callback-"
# A prompt (one form, one link) is waited for hot first, under its key with this suffix,
# then suspended under the bare key: for a used code, both are the same wait.
HOT_WAIT_SUFFIX = "-hot"
# How Prefect names a wait's run input keys: `<paused|suspended>-<pause key>-<kind>`.
_WAIT_KEY_PATTERN = re.compile(r"^(?:paused|suspended)-(.+)-(?:response|schema)$")
_PASTE_WHOLE_ADDRESS = (
    "Paste the WHOLE address of the page the provider sent you to after your decision "
    "(it carries this run's state), not the code alone."
)


def _secret(key: SecretStr | str) -> bytes:
    return (key.get_secret_value() if isinstance(key, SecretStr) else key).encode()


def key_id(key: SecretStr | str) -> str:
    """The public id of a state key: the first 8 hex characters of its SHA-256.

    It names the key in a state (so a receiver knows which key to check with) and
    reveals nothing usable about the key.
    """
    return hashlib.sha256(_secret(key)).hexdigest()[:KEY_ID_LENGTH]


class StateSigner:
    """Signs and verifies states with the current state key and the previous ones still accepted.

    Args:
        current: The key new states are signed with.
        previous: Keys rotated out but still accepted, for runs that were already waiting.

    Raises:
        ValueError: A key is empty.
    """

    def __init__(self, current: SecretStr | str, previous: Sequence[SecretStr | str] = ()) -> None:
        keys = [_secret(current), *(_secret(key) for key in previous)]
        if any(not key for key in keys):
            raise ValueError("A state key is empty.")
        self._current_id = key_id(current)
        self._keys: dict[str, bytes] = {}
        for key in keys:
            self._keys.setdefault(hashlib.sha256(key).hexdigest()[:KEY_ID_LENGTH], key)

    @property
    def current_key_id(self) -> str:
        """The id of the key new states are signed with."""
        return self._current_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every accepted key, the current one first."""
        return tuple(self._keys)

    def sign(self, authorization_id: UUID) -> str:
        """The state of an authorization under the current key: stable for an id and key."""
        return self._sign(authorization_id, self._current_id)

    def verify(self, state: str | None) -> UUID:
        """The authorization a state names, once its signature checks.

        Raises:
            UnknownStateKeyError: Well formed, but signed with a key this signer does not
                know (rotated out, or not loaded yet).
            StateMismatchError: Not a state of this project, or forged or altered.
        """
        parsed = parse_state(state)
        if parsed is None:
            raise StateMismatchError(
                "The state is not one this project issues: it was altered or comes from "
                "another application."
            )
        authorization_id, signing_key_id = parsed
        if signing_key_id not in self._keys:
            raise UnknownStateKeyError(
                "This link was signed with a key that was rotated out; ask for a new link."
            )
        expected = self._sign(authorization_id, signing_key_id)
        if not hmac.compare_digest((state or "").encode(), expected.encode()):
            raise StateMismatchError(
                "The state does not verify: it was forged or altered. Use the link you were sent."
            )
        return authorization_id

    def digest(self, value: str, *, state: str | None = None) -> str:
        """An HMAC of `value` (hex, 32 characters) under the key that signed `state`.

        Without a state (or when its key is unknown) the current key is used. Keyed on
        the state's key so that the flow and the receiver reach the same digest for
        one run even after a rotation.
        """
        parsed = parse_state(state)
        chosen = parsed[1] if parsed and parsed[1] in self._keys else self._current_id
        mac = hmac.new(self._keys[chosen], _CODE_LABEL + value.encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def _sign(self, authorization_id: UUID, signing_key_id: str) -> str:
        message = _STATE_LABEL + f"{authorization_id.hex}.{signing_key_id}".encode()
        mac = hmac.new(self._keys[signing_key_id], message, hashlib.sha256).digest()
        encoded = base64.urlsafe_b64encode(mac).decode().rstrip("=")
        return f"{authorization_id.hex}.{signing_key_id}.{encoded}"


def parse_state(state: str | None) -> tuple[UUID, str] | None:
    """The authorization id and key id a state names (unverified), or None when malformed."""
    match = _STATE_PATTERN.match(state or "")
    return (UUID(match.group(1)), match.group(2)) if match else None


def code_digest(signer: StateSigner, code: str, *, state: str | None = None) -> str:
    """The digest under which a received code is remembered as used (the code itself never is).

    Args:
        signer: The state signer (its keys make the digest unguessable).
        code: The authorization code (or, for a refusal, the error's identity).
        state: The run's state, so that the digest stays the same across a key rotation.
    """
    return signer.digest(code, state=state)


def used_code_key(digest: str) -> str:
    """The flow run input key that marks a code as used by a run (`callback-<digest>`).

    The Prefect server keeps (flow run, key) unique, so creating this input is an
    atomic check-and-set: the flow and the receiver both record under it.
    """
    if not re.fullmatch(r"[0-9a-f]{16,64}", digest):
        raise ValueError("A used-code digest is 16 to 64 lowercase hex characters.")
    return f"{USED_CODE_KEY_PREFIX}{digest}"


def prompt_of(wait_key: str) -> str:
    """The prompt a wait's run input key belongs to: the pause key without `HOT_WAIT_SUFFIX`.

    `paused-authorization-1-hot-response` and `suspended-authorization-1-response` are
    the one prompt `authorization-1`: the same form and link, waited for hot (or, with
    no hot slot free, suspended at once). A code recorded under one counts for the
    other. A key of another shape is its own prompt.
    """
    match = _WAIT_KEY_PATTERN.match(wait_key)
    if match is None:
        return wait_key
    pause_key = match.group(1)
    return pause_key.removesuffix(HOT_WAIT_SUFFIX)


def used_code_marker(wait_key: str, *, received_at: datetime | None = None) -> str:
    """The value stored under `used_code_key`: when, and for which wait, the code was used.

    Args:
        wait_key: The run input key the answer is (or was) stored under, i.e. the wait's
            `run_input_keyset["response"]`. The flow finding a marker for its own prompt
            knows the receiver delivered this very answer; any other prompt: already used.
        received_at: When (now by default).
    """
    when = (received_at or datetime.now(UTC)).isoformat()
    return json.dumps({"wait": wait_key, "received_at": when})


def marker_is_for_wait(marker: str, wait_key: str) -> bool:
    """Whether a stored used-code marker was recorded for this wait's prompt.

    The same prompt, not the same key: the receiver records the wait it saw, and its
    resume may land a moment later in the suspension that followed that prompt's hot
    wait (`prompt_of`). A malformed marker is for no wait.
    """
    try:
        value = json.loads(marker)
    except ValueError:
        return False
    if not isinstance(value, dict) or not isinstance(value.get("wait"), str):
        return False
    return prompt_of(value["wait"]) == prompt_of(wait_key)


def state_matches(state: str | None, expected: str) -> bool:
    """Compare a received state with the expected one in constant time."""
    return state is not None and hmac.compare_digest(state.encode(), expected.encode())


@dataclass(frozen=True)
class AuthorizationGrant:
    """An accepted answer: the authorization code and whether its state was checked.

    Attributes:
        code: The single-use authorization code.
        state_checked: Whether the answer carried this run's state (False only for a
            bare code accepted because the OAuth app block opts in).
    """

    code: SecretStr
    state_checked: bool


def read_authorization_answer(
    *,
    expected_state: str,
    signer: StateSigner | None = None,
    allow_bare_code: bool = False,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> AuthorizationGrant:
    """Read the provider's answer, as typed or pasted by a person or sent by a callback.

    `code` may hold the bare code, the whole redirect URL, or its query string: the
    values found there fill the other fields (Keap's extra `scope` and `error_uri`
    are ignored). The answer must carry this run's state:

    - with `signer`, the state must verify and name the same authorization as
      `expected_state` (so a link signed before a key rotation still matches);
      without it, the state must equal `expected_state`;
    - a bare code, a pasted address with an empty `state=`, or an `error` without a
      state is refused; with `allow_bare_code` a bare code without any state is
      accepted (`state_checked=False`), but a state that is present and wrong never is.

    No message holds the code or the state.

    Raises:
        AuthorizationDeniedError: The answer carries an `error` (e.g. `access_denied`).
        UnknownStateKeyError: The state was signed with a key rotated out.
        StateMismatchError: The answer's state is not this run's.
        InvalidAuthorizationAnswerError: No state (and no opt-in), or neither a usable
            code nor an error.
    """
    fields = {
        "code": _clean(code),
        "state": _clean(state),
        "error": _clean(error),
        "error_description": _clean(error_description),
    }
    empty_state_in_address = False
    if fields["code"] and _looks_like_redirect(fields["code"]):
        from_url, empty_state_in_address = _redirect_parameters(fields.pop("code") or "")
        for name, value in from_url.items():
            if fields.get(name) and value and fields[name] != value and name == "state":
                raise StateMismatchError(
                    "The pasted redirect URL and the state field disagree; paste only the "
                    "redirect URL of this run's consent link."
                )
            fields[name] = fields.get(name) or value
    received_state = fields.get("state")
    if received_state is None:
        bare_code_allowed = allow_bare_code and not empty_state_in_address
        if fields.get("error") or not fields.get("code") or not bare_code_allowed:
            if not fields.get("error") and not fields.get("code"):
                raise InvalidAuthorizationAnswerError(
                    "The answer holds neither an authorization code nor an error. "
                    + _PASTE_WHOLE_ADDRESS
                )
            reason = (
                "The pasted address has an empty state"
                if empty_state_in_address
                else "The answer carries no state, so it cannot be tied to this run"
            )
            raise InvalidAuthorizationAnswerError(f"{reason}. {_PASTE_WHOLE_ADDRESS}")
    elif not _state_is_expected(received_state, expected_state, signer):
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
            "The answer holds neither an authorization code nor an error. " + _PASTE_WHOLE_ADDRESS
        )
    if not _CODE_PATTERN.match(grant_code):
        raise InvalidAuthorizationAnswerError(
            "The authorization code is malformed: it must be visible ASCII without spaces, at "
            "most 2048 characters. " + _PASTE_WHOLE_ADDRESS
        )
    return AuthorizationGrant(code=SecretStr(grant_code), state_checked=received_state is not None)


def _state_is_expected(received: str, expected: str, signer: StateSigner | None) -> bool:
    if signer is None:
        return state_matches(received, expected)
    try:
        return signer.verify(received) == signer.verify(expected)
    except UnknownStateKeyError:
        raise  # a key rotated out is its own answer: ask for a new link
    except StateMismatchError:
        return False


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if len(text) > MAX_ANSWER_LENGTH:
        raise InvalidAuthorizationAnswerError(
            f"The answer is longer than {MAX_ANSWER_LENGTH} characters; paste only the "
            "redirect address."
        )
    return text or None


def _looks_like_redirect(value: str) -> bool:
    return "://" in value or value.startswith("?") or "code=" in value or "error=" in value


def _redirect_parameters(value: str) -> tuple[dict[str, str | None], bool]:
    """The OAuth parameters of a redirect URL (or query string), and whether `state=` was empty.

    Parameters other than the four of RFC 6749 §4.1.2 (Keap adds `scope`, others
    `error_uri` or `iss`) are ignored.
    """
    query = urlsplit(value).query if "://" in value else value.lstrip("?")
    found: dict[str, str | None] = {}
    empty_state = False
    for name, item in parse_qsl(query, keep_blank_values=True):
        if name in ("code", "state", "error", "error_description"):
            if name in found:
                raise InvalidAuthorizationAnswerError(
                    f"The redirect address carries '{name}' twice; paste the address exactly "
                    "as the browser shows it."
                )
            found[name] = item.strip() or None
            empty_state = empty_state or (name == "state" and not item.strip())
    if not found:
        raise InvalidAuthorizationAnswerError(
            "The pasted address carries no code, state or error. " + _PASTE_WHOLE_ADDRESS
        )
    return found, empty_state
