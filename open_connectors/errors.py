"""Errors raised by the Open Connectors client.

Every message names the cause and the fix, and never contains a secret, token,
authorization code or a URL with its query string::

    OpenConnectorsError
    ├── ConfigurationError (also a ValueError)   refused before any network call
    │   └── NotOAuth2ConnectorError              the connector is not OAuth 2.0
    ├── PlatformUnavailableError                 unreachable, or 5xx/429 after the retries
    ├── UnusableConsentUrlError                  consent URL would leak a secret, or lacks the state
    ├── InstanceGoneError                        the instance was deleted: it cannot keep its id
    ├── InstanceCheckFailedError                 saved in its block, but it does not answer
    ├── InstanceTokenNotSavedError               created, but its token could not be stored
    ├── InstanceBlockTakenError                  another authorization took the block's name
    ├── DisconnectRefusedError                   the platform did not confirm a deletion
    ├── RunEndedWhileWaitingError                cancelled or expired during a hot wait
    ├── InstanceOutcomeUnknownError              a single-use code was sent, its outcome unknown
    ├── DuplicateInstancesError                  several instances carry one run's tag
    ├── AuthorizationError                       the person's answer cannot be used
    │   ├── AuthorizationDeniedError             refused at the consent page (error=...)
    │   ├── StateMismatchError                   the answer belongs to another authorization
    │   │   └── UnknownStateKeyError             signed with a state key rotated out
    │   ├── InvalidAuthorizationAnswerError      neither a usable code nor an error
    │   └── AuthorizationTimeoutError            nobody answered in time
    └── ApiError                                 the platform answered with an error
        ├── PlatformAuthenticationError          401: user or organization secret rejected
        ├── ConnectorNotFoundError               404: unknown connector (element) key
        ├── InstanceNotFoundError                404: unknown or deleted instance
        ├── InstanceAuthenticationError          401 on a hub call: token rejected or revoked
        ├── InstanceDisabledError                403 on a hub call: the platform says disabled
        ├── AuthorizationCodeRejectedError       the provider refused the code (expired, reused)
        ├── OAuthAppRejectedError                the provider refused the OAuth app's key/secret
        └── ProviderError                        any other failure reported by the provider
            └── ProviderForbiddenError           403 on a hub call: the provider forbids it
"""

from __future__ import annotations


class OpenConnectorsError(Exception):
    """Base class of every error raised by this package."""


class ConfigurationError(OpenConnectorsError, ValueError):
    """Input was refused before any network call; the message says what to change."""


class NotOAuth2ConnectorError(ConfigurationError):
    """The connector does not authenticate with OAuth 2.0, so this flow cannot authorize it.

    Attributes:
        authentication_type: The connector's authentication type, as the platform names it.
    """

    def __init__(self, message: str, *, authentication_type: str | None) -> None:
        super().__init__(message)
        self.authentication_type = authentication_type


class PlatformUnavailableError(OpenConnectorsError):
    """The platform could not be reached or kept failing after the retries."""


class UnusableConsentUrlError(OpenConnectorsError):
    """The platform's consent URL cannot be shown: it would leak a secret or lose the state."""


class InstanceGoneError(OpenConnectorsError):
    """The instance no longer exists in Open Connectors, so it cannot keep its id."""


class InstanceCheckFailedError(OpenConnectorsError):
    """The instance was saved in its block, but does not answer a ping."""


class InstanceTokenNotSavedError(OpenConnectorsError):
    """The instance was created or re-authorized, but the store of its token was unavailable.

    Nothing is lost: the instance carries the run's tag, so a retry of the step (or a
    Retry of the run) finds it again, without sending the code, and saves the token.
    """


class RunEndedWhileWaitingError(OpenConnectorsError):
    """The run was cancelled or expired while it waited in its own process."""


class DisconnectRefusedError(OpenConnectorsError):
    """The platform did not confirm an instance's deletion; nothing was deleted locally."""


class InstanceBlockTakenError(OpenConnectorsError):
    """Another authorization's instance took the block name while the run waited."""


class InstanceOutcomeUnknownError(OpenConnectorsError):
    """A single-use code was sent, the answer was lost, and the instance did not show in time.

    The platform may have processed the request: the instance may exist. The code is
    never sent again; a Retry of the same run looks the instance up again and adopts it.

    Attributes:
        look_up_seconds: How long the instance was looked for after the ambiguous answer.
    """

    def __init__(self, message: str, *, look_up_seconds: float) -> None:
        super().__init__(message)
        self.look_up_seconds = look_up_seconds


class DuplicateInstancesError(OpenConnectorsError):
    """Several instances carry the tag of one run, so none can be adopted safely.

    Attributes:
        tag: The run's tag.
        instance_ids: Every instance carrying it.
    """

    def __init__(self, message: str, *, tag: str, instance_ids: list[int]) -> None:
        super().__init__(message)
        self.tag = tag
        self.instance_ids = instance_ids


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


class UnknownStateKeyError(StateMismatchError):
    """The state was signed with a state key that is no longer accepted (rotated out)."""


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


class ProviderForbiddenError(ProviderError):
    """A hub call was refused with 403 because the provider forbids the resource.

    The platform answers 403 both for a disabled instance and for a resource the
    provider does not let this account reach; this is the second case.
    """
