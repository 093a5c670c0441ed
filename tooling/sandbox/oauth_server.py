"""The Keap (Infusionsoft) OAuth 2.0 provider's logic: authorization requests, codes, tokens.

The HTTP routes (`provider.py`) and the platform's in-process code exchange
(`provisioning.py`) share this one implementation, so both answer alike.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from tooling.sandbox.clock import Clock
from tooling.sandbox.config import OAuthApp, SandboxConfig

ACCESS_TOKEN_TTL_SECONDS = 86_400  # Keap: 24 h.
REFRESH_TOKEN_TTL_SECONDS = 45 * 86_400  # Keap: 45 days, rotating.
# Used and expired codes are remembered this long, so a late replay still gets the
# precise "already used" / "expired" answer before the entry is forgotten.
_CODE_MEMORY_SECONDS = 3_600
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


_ISSUED_CODES_KEPT = 100_000


class OAuthError(Exception):
    """An RFC 6749 error answer of the token endpoint.

    Attributes:
        status_code: The HTTP status (400, or 401 for `invalid_client`).
        error: The RFC 6749 error code, e.g. `invalid_grant`.
        description: The `error_description`.
    """

    def __init__(self, status_code: int, error: str, description: str) -> None:
        """Build the error; see the class attributes."""
        super().__init__(f"{error}: {description}")
        self.status_code = status_code
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        """The JSON body the token endpoint answers."""
        return {"error": self.error, "error_description": self.description}

    def raw_body(self) -> str:
        """The body as the wire carries it (what the platform quotes as providerMessage)."""
        return json.dumps(self.body(), separators=(",", ":"))


def invalid_grant(description: str) -> OAuthError:
    """A 400 `invalid_grant` answer."""
    return OAuthError(400, "invalid_grant", description)


def invalid_request(description: str) -> OAuthError:
    """A 400 `invalid_request` answer."""
    return OAuthError(400, "invalid_request", description)


# Keap's own words, as seen in the field (open-connectors-api.md §12).
INVALID_REDIRECT_URI = "Invalid redirect_uri"
UNKNOWN_CLIENT_ON_EXCHANGE = "Unable to authenticate username and password"


class AuthorizationRequestError(Exception):
    """An authorization request the provider must not redirect back (RFC 6749 §4.1.2.1)."""


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated request to the consent page.

    Attributes:
        app: The OAuth app asking for access.
        redirect_uri: Where to send the answer.
        state: The caller's state, sent back unchanged (None if the caller sent none).
    """

    app: OAuthApp
    redirect_uri: str
    state: str | None

    def form_fields(self) -> dict[str, str]:
        """The fields the consent form carries to the decision endpoint."""
        fields = {
            "client_id": self.app.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": "full",
        }
        if self.state is not None:
            fields["state"] = self.state
        return fields


@dataclass(frozen=True)
class TokenSet:
    """The token endpoint's successful answer."""

    access_token: str
    refresh_token: str
    expires_in: int
    scope: str

    def body(self) -> dict[str, Any]:
        """The JSON body, Keap's shape."""
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
        }


@dataclass
class _IssuedCode:
    client_id: str
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class _RefreshGrant:
    client_id: str
    expires_at: float


def redirect_uri_problem(uri: str | None) -> str | None:
    """Say what is wrong with a redirect URI, or return None when it is acceptable.

    Keap requires https; like most providers, http is tolerated on loopback hosts.
    """
    if not uri:
        return "The redirect_uri parameter is missing."
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return "The redirect_uri is not a valid URL."
    if not host or not parts.scheme:
        return "The redirect_uri must be an absolute URL."
    if parts.fragment:
        return "The redirect_uri must not contain a fragment."
    scheme = parts.scheme.lower()
    if scheme == "https" or (scheme == "http" and host.lower() in _LOOPBACK_HOSTS):
        return None
    return "The redirect_uri must use https (http is allowed only on 127.0.0.1, localhost, [::1])."


def with_query(uri: str, params: list[tuple[str, str]]) -> str:
    """Append query parameters to a URI, keeping the query it already has."""
    parts = urlsplit(uri)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


class OAuthServer:
    """The provider's state: issued codes and refresh tokens of one sandbox."""

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        """Serve the apps and account of `config`, telling time with `clock`."""
        self._config = config
        self._clock = clock
        # Kept here, not in the config: the admin API changes it at run time, and a
        # config object may be shared by several sandboxes (tests do that).
        self.code_ttl_seconds: float = config.code_ttl_seconds
        """The lifetime of codes issued from now on, in seconds."""
        self._codes: dict[str, _IssuedCode] = {}
        self._refresh_tokens: dict[str, _RefreshGrant] = {}
        # Every code ever issued (bounded), for leak audits: tests search for them.
        self.issued_codes: deque[str] = deque(maxlen=_ISSUED_CODES_KEPT)

    # -- the consent page --------------------------------------------------------

    def validate_authorization_request(self, params: Mapping[str, str]) -> AuthorizationRequest:
        """Check a consent-page request.

        `response_type` and `scope` default to Keap's only values, `code` and `full`.

        Raises:
            AuthorizationRequestError: Saying what is wrong; the caller must not redirect.
        """
        client_id = params.get("client_id", "")
        if not client_id:
            raise AuthorizationRequestError("The client_id parameter is missing.")
        app = self._config.find_app(client_id)
        if app is None:
            raise AuthorizationRequestError("The client_id is not a registered application.")
        redirect_uri = params.get("redirect_uri")
        problem = redirect_uri_problem(redirect_uri)
        if problem is not None or redirect_uri is None:
            raise AuthorizationRequestError(problem or "The redirect_uri parameter is missing.")
        if params.get("response_type", "code") != "code":
            raise AuthorizationRequestError("The response_type must be 'code'.")
        if params.get("scope", "full") != "full":
            raise AuthorizationRequestError("The scope must be 'full'.")
        return AuthorizationRequest(app=app, redirect_uri=redirect_uri, state=params.get("state"))

    def issue_code(self, request: AuthorizationRequest) -> str:
        """Issue a single-use code bound to the request's client and redirect URI."""
        now = self._clock()
        self._forget_old_codes(now)
        code = secrets.token_urlsafe(32)
        self.issued_codes.append(code)
        self._codes[code] = _IssuedCode(
            client_id=request.app.client_id,
            redirect_uri=request.redirect_uri,
            expires_at=now + self.code_ttl_seconds,
        )
        return code

    def expire_unused_codes(self) -> int:
        """Make every issued, unused, unexpired code expire now (a human who was slow).

        Returns:
            How many codes expired.
        """
        now = self._clock()
        expired = 0
        for issued in self._codes.values():
            if not issued.used and now < issued.expires_at:
                issued.expires_at = now
                expired += 1
        return expired

    def _forget_old_codes(self, now: float) -> None:
        stale = [
            code for code, c in self._codes.items() if now > c.expires_at + _CODE_MEMORY_SECONDS
        ]
        for code in stale:
            del self._codes[code]

    # -- the token endpoint ------------------------------------------------------

    def token_request(
        self, form: Mapping[str, str], basic_auth: tuple[str, str] | None
    ) -> TokenSet:
        """Answer a token-endpoint request (the form fields and any HTTP Basic credentials).

        Raises:
            OAuthError: The RFC 6749 error to answer.
        """
        grant_type = form.get("grant_type")
        if not grant_type:
            raise invalid_request("response_type or grant_type is required")
        client_id, client_secret = basic_auth or (
            form.get("client_id", ""),
            form.get("client_secret", ""),
        )
        if grant_type == "authorization_code":
            code = form.get("code")
            redirect_uri = form.get("redirect_uri")
            self.authenticate_client(client_id, client_secret, code_exchange=True)
            if not code:
                raise invalid_request("The code parameter is required.")
            if not redirect_uri:
                raise invalid_request("The redirect_uri parameter is required.")
            return self.exchange_code(
                code=code,
                client_id=client_id,
                client_secret=client_secret,
                redirect_uri=redirect_uri,
            )
        if grant_type == "refresh_token":
            return self.refresh(
                refresh_token=form.get("refresh_token", ""),
                client_id=client_id,
                client_secret=client_secret,
            )
        raise OAuthError(400, "unsupported_grant_type", "The grant_type is not supported.")

    def authenticate_client(
        self, client_id: str, client_secret: str, *, code_exchange: bool = False
    ) -> OAuthApp:
        """Check an app's credentials.

        Args:
            client_id: The app's client id.
            client_secret: The app's client secret.
            code_exchange: The check of a code exchange, where Keap answers a bad
                client with 401 `invalid_grant` "Unable to authenticate username and
                password" (infusionsoft-php#260) instead of `invalid_client`.

        Raises:
            OAuthError: 401 `invalid_client`, or 401 `invalid_grant` on a code exchange.
        """
        app = self._config.find_app(client_id) if client_id else None
        if app is None or not secrets.compare_digest(
            app.client_secret.encode(), client_secret.encode()
        ):
            if code_exchange:
                raise OAuthError(401, "invalid_grant", UNKNOWN_CLIENT_ON_EXCHANGE)
            raise OAuthError(401, "invalid_client", "Invalid client credentials.")
        return app

    def exchange_code(
        self, *, code: str, client_id: str, client_secret: str, redirect_uri: str
    ) -> TokenSet:
        """Exchange an authorization code for tokens (`grant_type=authorization_code`).

        A failed exchange leaves the code usable, so a caller can correct a mistake.

        Raises:
            OAuthError: 401 `invalid_grant` for a bad client, 400 `invalid_request`
                "Invalid redirect_uri" for another redirect URI than the consent's,
                or 400 `invalid_grant` saying what is wrong with the code.
        """
        self.authenticate_client(client_id, client_secret, code_exchange=True)
        issued = self._codes.get(code)
        if issued is None:
            raise invalid_grant("Invalid authorization code.")
        if issued.client_id != client_id:
            raise invalid_grant("Authorization code was issued to another client.")
        if issued.used:
            raise invalid_grant("Authorization code already used.")
        if self._clock() >= issued.expires_at:
            raise invalid_grant("Authorization code expired.")
        if issued.redirect_uri != redirect_uri:
            raise invalid_request(INVALID_REDIRECT_URI)
        issued.used = True
        return self._issue_tokens(client_id)

    def refresh(self, *, refresh_token: str, client_id: str, client_secret: str) -> TokenSet:
        """Exchange a refresh token for new tokens; the old refresh token stops working.

        Raises:
            OAuthError: `invalid_client`, `invalid_request` or `invalid_grant`.
        """
        self.authenticate_client(client_id, client_secret)
        if not refresh_token:
            raise invalid_request("The refresh_token parameter is required.")
        grant = self._refresh_tokens.get(refresh_token)
        if grant is None or grant.client_id != client_id or self._clock() >= grant.expires_at:
            raise invalid_grant("Invalid refresh token.")
        del self._refresh_tokens[refresh_token]
        return self._issue_tokens(client_id)

    def _issue_tokens(self, client_id: str) -> TokenSet:
        refresh_token = secrets.token_urlsafe(32)
        self._refresh_tokens[refresh_token] = _RefreshGrant(
            client_id=client_id, expires_at=self._clock() + REFRESH_TOKEN_TTL_SECONDS
        )
        return TokenSet(
            access_token=secrets.token_urlsafe(32),
            refresh_token=refresh_token,
            expires_in=ACCESS_TOKEN_TTL_SECONDS,
            scope=f"full|{self._config.account}",
        )
