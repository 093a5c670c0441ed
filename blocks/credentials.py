"""Blocks holding the secrets of an Open Connectors account and of an OAuth app."""

from __future__ import annotations

from prefect.blocks.abstract import CredentialsBlock
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from blocks.schema_cache import CachedSchema
from open_connectors import DEFAULT_BASE_URL, OpenConnectorsClient, RetryPolicy
from open_connectors.connectors import validate_callback_url
from open_connectors.regions import normalize_base_url

DOCUMENTATION_URL = "https://help.openconnectors.ext.hana.ondemand.com/home"
OPEN_CONNECTORS_CALLBACK_URL = "https://auth.cloudelements.io/oauth"


class OpenConnectorsCredentials(CachedSchema, CredentialsBlock):
    """The user and organization secrets of an SAP Open Connectors account.

    Every platform call sends them as `Authorization: User …, Organization …`.
    Find them in Open Connectors under your profile (user secret) and your
    organization's settings (organization secret).

    Example:
        ```python
        from blocks import OpenConnectorsCredentials

        credentials = OpenConnectorsCredentials.load("BLOCK_NAME")
        async with credentials.get_client() as client:
            instances = await client.find_instances()
        ```
    """

    _block_type_name = "Open Connectors Credentials"
    _block_type_slug = "open-connectors-credentials"
    _documentation_url = DOCUMENTATION_URL

    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        title="API base URL",
        description=(
            "The platform API of your region, ending in /elements/api-v2 (for example "
            "https://api.openconnectors.us2.ext.hana.ondemand.com/elements/api-v2)."
        ),
    )
    user_secret: SecretStr = Field(
        title="User secret", description="The user secret of the Open Connectors account."
    )
    organization_secret: SecretStr = Field(
        title="Organization secret", description="The organization secret of the account."
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=300,
        title="Timeout (seconds)",
        description="Seconds allowed to connect, and for each read and write of a request.",
    )
    max_attempts: int = Field(
        default=4,
        ge=1,
        le=10,
        title="Attempts per request",
        description="Attempts per request, the first included, when the platform fails briefly.",
    )

    max_retry_wait_seconds: float = Field(
        default=60.0,
        gt=0,
        le=600,
        title="Longest wait before a retry (seconds)",
        description="The cap on a server-requested Retry-After wait before a retry.",
    )
    ambiguous_lookup_seconds: float = Field(
        default=60.0,
        ge=0,
        le=900,
        title="Look-up after a lost answer (seconds)",
        description=(
            "After an ambiguous answer to the request carrying a single-use code (a timeout, "
            "500, 502, 504), how long to look for the instance instead of sending the code "
            "again."
        ),
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return normalize_base_url(value)

    def get_client(self, element_token: SecretStr | None = None) -> OpenConnectorsClient:
        """A new client of the platform API; use it as `async with`.

        Args:
            element_token: An instance token, for hub calls made on that instance.
        """
        return OpenConnectorsClient(
            self.base_url,
            self.user_secret,
            self.organization_secret,
            element_token=element_token,
            timeout=self.timeout_seconds,
            retry_policy=RetryPolicy(
                max_attempts=self.max_attempts, max_retry_after=self.max_retry_wait_seconds
            ),
            ambiguous_lookup_seconds=self.ambiguous_lookup_seconds,
        )


class OAuthAppCredentials(CachedSchema, Block):
    """The OAuth 2.0 app registered with the provider (for Infusionsoft: a Keap developer app).

    Its key and secret let Open Connectors exchange the authorization code for the
    provider's tokens; the callback URL is where the provider sends the person back.

    Example:
        ```python
        from blocks import OAuthAppCredentials

        oauth_app = OAuthAppCredentials.load("BLOCK_NAME")
        print(oauth_app.callback_url)
        ```
    """

    _block_type_name = "Open Connectors OAuth App"
    _block_type_slug = "open-connectors-oauth-app"
    _documentation_url = DOCUMENTATION_URL

    api_key: str = Field(
        title="API key (client id)",
        description="The client id of the OAuth app; it is public and appears in consent links.",
    )
    api_secret: SecretStr = Field(
        title="API secret (client secret)", description="The client secret of the OAuth app."
    )
    callback_url: str = Field(
        default=OPEN_CONNECTORS_CALLBACK_URL,
        title="Callback URL",
        description=(
            "Where the provider redirects after consent; must be registered with the app and "
            "use https (the callback receiver's /oauth/callback, or Open Connectors' own page)."
        ),
    )
    scope: str | None = Field(
        default=None,
        title="Scope",
        description="The OAuth scope to request; empty for the provider's default (Keap: full).",
    )
    accept_bare_code: bool = Field(
        default=False,
        title="Accept a bare code (risky)",
        description=(
            "Off by default. When on, a code pasted alone into the run's form (without the "
            "state of the redirect address) is accepted. Risk: nothing then ties the code to "
            "this run, so a code from someone else's consent, or from another run, would "
            "bind the instance to the wrong account. Turn it on only where the redirect "
            "address cannot be copied; a state that is present and wrong is always refused."
        ),
    )

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("api_key (the OAuth client id) is empty.")
        return value

    @field_validator("callback_url")
    @classmethod
    def _check_callback_url(cls, value: str) -> str:
        return validate_callback_url(value)
