"""The checked form of an authorization's parameters, and the blocks it needs.

Everything here runs before the first network call to the platform: a person who
mistypes a server name, a block name or a connector key learns it at once, in words.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import TypeVar

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from blocks import ConnectorInstance, OAuthAppCredentials, OpenConnectorsCredentials
from open_connectors import ConfigurationError, profile_for
from open_connectors.connectors import (
    prepare_configuration,
    validate_instance_name,
    validate_tags,
)

BLOCK_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
DEFAULT_CREDENTIALS_BLOCK = "open-connectors"
DEFAULT_OAUTH_APP_BLOCK = "infusionsoft-oauth-app"
MAX_TIMEOUT_MINUTES = 60 * 24 * 30
_NOT_FOUND = "Unable to find block document"

B = TypeVar("B", bound=Block)


class AuthorizationRequest(BaseModel):
    """What one authorization asks for, checked and normalized.

    Build it with `AuthorizationRequest.build(...)`, which raises
    `ConfigurationError` with a message for the person.
    """

    model_config = ConfigDict(frozen=True)

    instance_name: str
    element_key: str
    hub: str
    configuration: dict[str, str]
    secret_configuration: dict[str, str]
    tags: list[str]
    credentials_block: str
    oauth_app_block: str
    instance_block: str
    timeout_seconds: int

    @classmethod
    def build(
        cls,
        *,
        instance_name: str,
        element_key: str,
        configuration: dict[str, str] | None,
        secret_configuration: dict[str, str] | None,
        tags: list[str] | None,
        credentials_block: str,
        oauth_app_block: str,
        instance_block: str | None,
        timeout_minutes: float,
    ) -> AuthorizationRequest:
        """Check and normalize the flow's parameters.

        Raises:
            ConfigurationError: A parameter is unusable; the message says which and why.
        """
        name = validate_instance_name(instance_name)
        profile = profile_for(element_key)
        secrets = _check_secret_configuration(secret_configuration)
        if not 0 < timeout_minutes <= MAX_TIMEOUT_MINUTES:
            raise ConfigurationError(
                f"authorization_timeout_minutes must be above 0 and at most {MAX_TIMEOUT_MINUTES} "
                f"(30 days); got {timeout_minutes}."
            )
        return cls(
            instance_name=name,
            element_key=profile.key,
            hub=profile.hub,
            configuration=prepare_configuration(profile, configuration, list(secrets)),
            secret_configuration=secrets,
            tags=validate_tags(tags),
            credentials_block=check_block_name(credentials_block, "credentials_block"),
            oauth_app_block=check_block_name(oauth_app_block, "oauth_app_block"),
            instance_block=check_block_name(
                instance_block or block_name_for(name), "instance_block"
            ),
            timeout_seconds=max(1, round(timeout_minutes * 60)),
        )


def block_name_for(instance_name: str) -> str:
    """A block name derived from an instance name: `ACME ERP (prod)` → `acme-erp-prod`."""
    ascii_name = unicodedata.normalize("NFKD", instance_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:100].strip("-")
    return slug or "connector-instance"


def check_block_name(value: str, parameter: str) -> str:
    """Check a Prefect block name (lowercase letters, digits and dashes).

    Raises:
        ConfigurationError: The name is not a valid block name.
    """
    name = (value or "").strip()
    if not BLOCK_NAME_PATTERN.match(name):
        raise ConfigurationError(
            f"{parameter} {value[:100]!r} is not a block name: use lowercase letters, digits "
            "and dashes, at most 100 characters."
        )
    return name


def _check_secret_configuration(values: dict[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, block_name in (values or {}).items():
        if key.startswith("oauth."):
            raise ConfigurationError(
                f"secret_configuration key {key!r} is set from the OAuth app block; remove it."
            )
        checked[key] = check_block_name(block_name, f"secret_configuration[{key!r}]")
    return checked


@dataclass(frozen=True)
class AuthorizationBlocks:
    """The blocks an authorization uses, loaded and checked."""

    credentials: OpenConnectorsCredentials
    oauth_app: OAuthAppCredentials
    secret_configuration: dict[str, SecretStr]


async def load_authorization_blocks(
    request: AuthorizationRequest, *, flow_run_id: str | None = None
) -> AuthorizationBlocks:
    """Load the credentials, OAuth app and Secret blocks; refuse a taken instance block.

    Args:
        request: The checked request.
        flow_run_id: The current run; an instance block it saved itself may be overwritten.

    Raises:
        ConfigurationError: A block is missing or invalid, or the instance block is taken.
    """
    credentials = await _load(
        OpenConnectorsCredentials, request.credentials_block, "credentials_block"
    )
    oauth_app = await _load(OAuthAppCredentials, request.oauth_app_block, "oauth_app_block")
    secrets: dict[str, SecretStr] = {}
    for key, block_name in request.secret_configuration.items():
        secret = await _load(Secret, block_name, f"secret_configuration[{key!r}]")
        secrets[key] = SecretStr(_secret_text(secret))
    existing = await _load_optional(ConnectorInstance, request.instance_block)
    if existing is not None and (
        flow_run_id is None or existing.authorized_by_flow_run != flow_run_id
    ):
        raise ConfigurationError(
            f"The block '{request.instance_block}' already holds instance "
            f"{existing.instance_id} ({existing.element_key}, '{existing.instance_name}'). Give "
            "another instance_block, delete that block, or re-authorize that instance with the "
            "reauthorize-connector-instance deployment."
        )
    return AuthorizationBlocks(credentials, oauth_app, secrets)


async def _load(block_type: type[B], name: str, parameter: str) -> B:
    """Load a block by name, turning Prefect's errors into a message for the person."""
    try:
        return await block_type.aload(name)
    except ValueError as exc:
        if isinstance(exc, ValidationError) or _NOT_FOUND not in str(exc):
            raise ConfigurationError(
                f"The block '{name}' ({parameter}) cannot be used: it is not a valid "
                f"{block_type.get_block_type_name()} block ({type(exc).__name__}). Edit it in "
                "the Prefect UI under Blocks."
            ) from None
        raise ConfigurationError(
            f"No {block_type.get_block_type_name()} block named '{name}' ({parameter}). "
            "Create it in the Prefect UI under Blocks, or pass the name of an existing one."
        ) from None


async def _load_optional(block_type: type[B], name: str) -> B | None:
    try:
        return await block_type.aload(name)
    except ValueError as exc:
        if _NOT_FOUND in str(exc):
            return None
        raise ConfigurationError(
            f"The block '{name}' cannot be read as a {block_type.get_block_type_name()} block "
            f"({type(exc).__name__}); choose another instance_block or fix it in the Prefect UI."
        ) from None


def _secret_text(secret: Secret) -> str:
    # Secret.get() parses JSON-looking values (a numeric key would become an int): keep text.
    raw = secret.value.get_secret_value()
    return raw if isinstance(raw, str) else json.dumps(raw)
