"""A typed client of the SAP Open Connectors platform API (no Prefect inside)."""

from open_connectors.authorization import (
    AuthorizationGrant,
    authorization_id_from_state,
    derive_state,
    read_authorization_answer,
)
from open_connectors.client import EnsuredInstance, OpenConnectorsClient
from open_connectors.connectors import ConnectorProfile, profile_for
from open_connectors.errors import (
    ApiError,
    AuthorizationCodeRejectedError,
    AuthorizationDeniedError,
    AuthorizationError,
    AuthorizationTimeoutError,
    ConfigurationError,
    ConnectorNotFoundError,
    InstanceAuthenticationError,
    InstanceDisabledError,
    InstanceNotFoundError,
    InvalidAuthorizationAnswerError,
    OAuthAppRejectedError,
    OpenConnectorsError,
    PlatformAuthenticationError,
    PlatformUnavailableError,
    ProviderError,
    StateMismatchError,
)
from open_connectors.models import Element, Instance, InstanceRequest, OAuthUrl, Page
from open_connectors.regions import DEFAULT_BASE_URL, REGIONS
from open_connectors.retry import RetryPolicy

__all__ = [
    "DEFAULT_BASE_URL",
    "REGIONS",
    "ApiError",
    "AuthorizationCodeRejectedError",
    "AuthorizationDeniedError",
    "AuthorizationError",
    "AuthorizationGrant",
    "AuthorizationTimeoutError",
    "ConfigurationError",
    "ConnectorNotFoundError",
    "ConnectorProfile",
    "Element",
    "EnsuredInstance",
    "Instance",
    "InstanceAuthenticationError",
    "InstanceDisabledError",
    "InstanceNotFoundError",
    "InstanceRequest",
    "InvalidAuthorizationAnswerError",
    "OAuthAppRejectedError",
    "OAuthUrl",
    "OpenConnectorsClient",
    "OpenConnectorsError",
    "Page",
    "PlatformAuthenticationError",
    "PlatformUnavailableError",
    "ProviderError",
    "RetryPolicy",
    "StateMismatchError",
    "authorization_id_from_state",
    "derive_state",
    "profile_for",
    "read_authorization_answer",
]
