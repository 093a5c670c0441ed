"""The platform's `Authorization` header: `User <secret>, Organization <secret>, Element <token>`.

The header is a comma-separated list of `Type value` pairs, in any order, with
case-insensitive types. Any bad or missing secret or token answers 401 with one message.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.requests import Request

from tooling.sandbox.errors import PlatformError, unauthorized
from tooling.sandbox.state import SandboxState
from tooling.sandbox.store import Instance

_KINDS = frozenset({"user", "organization", "element"})

REVOKED_MESSAGE = "The provider rejected the instance credentials: re-authenticate the instance."


@dataclass(frozen=True)
class Credentials:
    """The parts of an `Authorization` header; None where absent."""

    user: str | None = None
    organization: str | None = None
    element: str | None = None


def parse_authorization(header: str) -> Credentials | None:
    """Parse the header, or return None when it is malformed (unknown or repeated types)."""
    parts: dict[str, str] = {}
    for raw in header.split(","):
        if not raw.strip():
            continue
        kind, _, value = raw.strip().partition(" ")
        kind, value = kind.lower(), value.strip()
        if kind not in _KINDS or not value or kind in parts:
            return None
        parts[kind] = value
    if not parts:
        return None
    return Credentials(
        user=parts.get("user"),
        organization=parts.get("organization"),
        element=parts.get("element"),
    )


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _credentials(request: Request) -> Credentials:
    header = request.headers.get("authorization")
    credentials = parse_authorization(header) if header else None
    if credentials is None:
        raise unauthorized()
    return credentials


def _check_platform(credentials: Credentials, state: SandboxState) -> None:
    config = state.config
    if not (
        _same(credentials.user, config.user_secret)
        and _same(credentials.organization, config.organization_secret)
    ):
        raise unauthorized()
    # An Element token is not needed on platform calls, but a stale one is still refused.
    if credentials.element is not None and state.store.by_token(credentials.element) is None:
        raise unauthorized()


def require_platform_auth(request: Request, state: SandboxState) -> None:
    """Require valid `User` and `Organization` secrets.

    Raises:
        PlatformError: 401.
    """
    _check_platform(_credentials(request), state)


def check_optional_platform_auth(request: Request, state: SandboxState) -> None:
    """Accept a request without `Authorization`, but refuse a bad one (as `oauth/url` does).

    Raises:
        PlatformError: 401.
    """
    if "authorization" in request.headers:
        require_platform_auth(request, state)


def require_hub_auth(request: Request, state: SandboxState) -> Instance:
    """Require a valid `User` secret and a live `Element` token (`Organization` optional).

    Returns:
        The instance the token belongs to, usable (enabled and valid).

    Raises:
        PlatformError: 401 for bad credentials or a revoked instance, 403 when disabled.
    """
    credentials = _credentials(request)
    config = state.config
    if not _same(credentials.user, config.user_secret):
        raise unauthorized()
    if credentials.organization is not None and not _same(
        credentials.organization, config.organization_secret
    ):
        raise unauthorized()
    instance = state.store.by_token(credentials.element) if credentials.element else None
    if instance is None:
        raise unauthorized()
    headers = {"elements-element-instance-id": str(instance.id)}
    if instance.disabled:
        raise PlatformError(403, f"The instance {instance.id} is disabled.", headers=headers)
    if not instance.valid:
        raise PlatformError(401, REVOKED_MESSAGE, headers=headers)
    return instance
