"""Errors raised by the Open Connectors client.

Every message names the cause and the fix, and never contains a secret, token,
authorization code or a URL with its query string::

    OpenConnectorsError
    ├── ConfigurationError (also a ValueError)   refused before any network call
    ├── PlatformUnavailableError                 unreachable, or 5xx/429 after the retries
    ├── AuthorizationError                       the person's answer cannot be used
    │   ├── AuthorizationDeniedError             refused at the consent page (error=...)
    │   ├── StateMismatchError                   the answer belongs to another authorization
    │   ├── InvalidAuthorizationAnswerError      neither a usable code nor an error
    │   └── AuthorizationTimeoutError            nobody answered in time
    └── ApiError                                 the platform answered with an error
        ├── PlatformAuthenticationError          401: user or organization secret rejected
        ├── ConnectorNotFoundError               404: unknown connector (element) key
        ├── InstanceNotFoundError                404: unknown or deleted instance
        ├── InstanceAuthenticationError          401 on a hub call: token rejected or revoked
        ├── InstanceDisabledError                403 on a hub call
        ├── AuthorizationCodeRejectedError       the provider refused the code (expired, reused)
        ├── OAuthAppRejectedError                the provider refused the OAuth app's key/secret
        └── ProviderError                        any other failure reported by the provider
"""

from __future__ import annotations


class OpenConnectorsError(Exception):
    """Base class of every error raised by this package."""


class ConfigurationError(OpenConnectorsError, ValueError):
    """Input was refused before any network call; the message says what to change."""


class PlatformUnavailableError(OpenConnectorsError):
    """The platform could not be reached or kept failing after the retries."""


class AuthorizationError(OpenConnectorsError):
    """The answer to the consent request cannot be used; no instance is created."""


class AuthorizationDeniedError(AuthorizationError):
    """The person refused at the provider's consent page, or the provider reported an error.

    Attributes:
        error: The OAuth 2.0 `error` code, e.g. `access_denied`.
        description: The provider's `error_description`, if any.
    """

    def __init__(self, message: str, *, error: str, description: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.description = description


class StateMismatchError(AuthorizationError):
    """The answer's `state` is not the one this authorization sent."""


class InvalidAuthorizationAnswerError(AuthorizationError):
    """The answer holds neither a usable code nor an error."""


class AuthorizationTimeoutError(AuthorizationError):
    """Nobody answered the consent request before the deadline."""


class ApiError(OpenConnectorsError):
    """The platform answered with an error status.

    Attributes:
        status_code: The HTTP status of the answer.
        request_id: The platform's `requestId`, to quote to SAP support.
        platform_message: The platform's `message`.
        provider_message: The platform's `providerMessage` (the provider's own words), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        platform_message: str | None = None,
        provider_message: str | None = None,
    ) -> None:
        suffix = f" (HTTP {status_code}" + (f", request {request_id})" if request_id else ")")
        super().__init__(message + suffix)
        self.status_code = status_code
        self.request_id = request_id
        self.platform_message = platform_message
        self.provider_message = provider_message


class PlatformAuthenticationError(ApiError):
    """The platform rejected the user or organization secret."""


class ConnectorNotFoundError(ApiError):
    """The platform does not know the connector (element) key or id."""


class InstanceNotFoundError(ApiError):
    """The instance does not exist (never created, or deleted)."""


class InstanceAuthenticationError(ApiError):
    """A hub call was refused: the instance token is invalid, deleted or its grant revoked."""


class InstanceDisabledError(ApiError):
    """A hub call was refused because the instance is disabled."""


class AuthorizationCodeRejectedError(ApiError):
    """The provider refused the authorization code: expired, already used or not ours."""


class OAuthAppRejectedError(ApiError):
    """The provider refused the OAuth app's key or secret."""


class ProviderError(ApiError):
    """The provider behind the connector failed or refused for another reason."""
