"""Configuration of the sandbox: platform secrets, OAuth apps, the Keap account, limits."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class OAuthApp(BaseModel):
    """An OAuth 2.0 app registered with the sandbox provider (a Keap developer app).

    Attributes:
        client_id: The app's client id, sent as `apiKey` / `oauth.api.key`.
        client_secret: The app's client secret, sent as `apiSecret` / `oauth.api.secret`.
        name: The name the consent page shows to the person who authorizes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    name: str = Field(min_length=1)


def _default_apps() -> list[OAuthApp]:
    return [
        OAuthApp(
            client_id="sandbox-client-id",
            client_secret="sandbox-client-secret",  # noqa: S106 - a well-known sandbox value
            name="Prefect Open Connectors demo",
        )
    ]


class SandboxConfig(BaseModel):
    """Everything the sandbox can be told; the defaults suit the demo and the tests.

    Attributes:
        user_secret: The platform's `User` secret.
        organization_secret: The platform's `Organization` secret.
        oauth_apps: The OAuth apps the sandbox provider knows.
        account: The Keap account the consent page authorizes (ends up in the token scope).
        code_ttl_seconds: How long an authorization code can be exchanged.
        records_per_resource: How many records every hub resource holds.
    """

    model_config = ConfigDict(extra="forbid")

    user_secret: str = Field(default="sandbox-user-secret", min_length=1)
    organization_secret: str = Field(default="sandbox-organization-secret", min_length=1)
    oauth_apps: list[OAuthApp] = Field(default_factory=_default_apps)
    account: str = Field(default="xx123.infusionsoft.com", min_length=1)
    code_ttl_seconds: float = Field(default=600, gt=0)
    records_per_resource: int = Field(default=1000, ge=0)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SandboxConfig:
        """Load a configuration from a JSON file.

        Args:
            path: The JSON file; absent fields take their defaults.

        Returns:
            The validated configuration.

        Raises:
            OSError: The file cannot be read.
            pydantic.ValidationError: The file is not a valid configuration.
        """
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def find_app(self, client_id: str) -> OAuthApp | None:
        """Return the OAuth app with this client id, or None."""
        return next((app for app in self.oauth_apps if app.client_id == client_id), None)
