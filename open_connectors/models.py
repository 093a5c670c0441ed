"""Pydantic models of the platform's payloads (only the fields this project uses).

Answers are parsed leniently (`extra="ignore"`): the platform adds fields freely.
Secrets stay `SecretStr` until the request body is built.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class OAuthUrl(_Answer):
    """The answer of `/elements/{keyOrId}/oauth/url`: the provider's consent URL."""

    oauth_url: str = Field(alias="oauthUrl")
    element: str | None = None


class Element(_Answer):
    """A connector (element) as the platform describes it."""

    id: int | None = None
    key: str
    name: str | None = None
    hub: str | None = None


class Instance(_Answer):
    """A connector instance.

    `token` is present on single-instance reads and on creation; list answers may
    omit it.
    """

    id: int
    name: str
    token: SecretStr | None = None
    element: Element | None = None
    tags: list[str] = Field(default_factory=list)
    valid: bool = True
    disabled: bool = False
    created_date: datetime | None = Field(default=None, alias="createdDate")

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_names(cls, value: Any) -> Any:
        # Older platform versions answer tags as objects: [{"id": 12, "name": "x"}].
        if isinstance(value, list):
            return [item.get("name", "") if isinstance(item, dict) else item for item in value]
        return value if value is not None else []


class InstanceBody(BaseModel):
    """What `POST /instances` (create) and `PUT /instances/{id}` (re-authorize) send.

    Attributes:
        element_key: The connector key, e.g. `infusionsofterp`.
        name: The instance name.
        code: The OAuth authorization code from the provider's redirect.
        configuration: Non-secret configuration, e.g. `infusionsoft.server`.
        secret_configuration: Secret configuration, e.g. `oauth.api.secret`.
        tags: Tags of the instance.
    """

    model_config = ConfigDict(frozen=True)

    element_key: str
    name: str
    code: SecretStr
    configuration: dict[str, str] = Field(default_factory=dict)
    secret_configuration: dict[str, SecretStr] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    def to_body(self) -> dict[str, Any]:
        """The JSON body, with secrets revealed: only for the request itself."""
        configuration: dict[str, str] = dict(self.configuration)
        configuration.update(
            {key: value.get_secret_value() for key, value in self.secret_configuration.items()}
        )
        return {
            "element": {"key": self.element_key},
            "name": self.name,
            "configuration": configuration,
            "providerData": {"code": self.code.get_secret_value()},
            "tags": list(self.tags),
        }


class Page(BaseModel):
    """One page of a hub resource and the cursor to the next one.

    Attributes:
        records: The records of this page.
        next_page: The `elements-next-page-token` cursor; None on the last page.
        total_count: The `elements-total-count` header, when sent.
    """

    records: list[dict[str, Any]]
    next_page: str | None = None
    total_count: int | None = None
