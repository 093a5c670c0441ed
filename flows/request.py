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
from open_connectors import ConfigurationError, InstanceRequest, profile_for
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


class ConsentSubject(BaseModel):
    """What a consent link is about: the instance, its connector and its saved block.

    The common part of a new authorization (`AuthorizationRequest`) and of a
    re-authorization (`flows.reauthorize.ReauthorizationRequest`); `get_redirect_url`
    needs no more than this.
    """

    model_config = ConfigDict(frozen=True)

    instance_name: str
    element_key: str
    instance_block: str


class AuthorizationRequest(ConsentSubject):
    """What one authorization asks for, checked and normalized.

    Build it with `AuthorizationRequest.build(...)`, which raises
    `ConfigurationError` with a message for the person.
    """

    hub: str
    configuration: dict[str, str]
    secret_configuration: dict[str, str]
    tags: list[str]
    credentials_block: str
    oauth_app_block: str
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
        secrets = check_secret_configuration(secret_configuration)
        timeout_seconds = check_timeout_minutes(timeout_minutes)
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
            timeout_seconds=timeout_seconds,
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


def check_timeout_minutes(timeout_minutes: float) -> int:
    """Check `authorization_timeout_minutes` and return it in whole seconds.

    Raises:
        ConfigurationError: Not above 0, or above 30 days.
    """
    if not 0 < timeout_minutes <= MAX_TIMEOUT_MINUTES:
        raise ConfigurationError(
            f"authorization_timeout_minutes must be above 0 and at most {MAX_TIMEOUT_MINUTES} "
            f"(30 days); got {timeout_minutes}."
        )
    return max(1, round(timeout_minutes * 60))


def check_secret_configuration(values: dict[str, str] | None) -> dict[str, str]:
    """Check secret configuration given as `{configuration key: Secret block name}`.

    Raises:
        ConfigurationError: A key is set from the OAuth app block, or a name is not a block name.
    """
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


def build_instance_request(
    *,
    element_key: str,
    name: str,
    configuration: dict[str, str],
    tags: list[str],
    blocks: AuthorizationBlocks,
    code: SecretStr,
) -> InstanceRequest:
    """The body of `POST /instances` (create) or `PUT /instances/{id}` (re-authorize).

    The instance configuration plus the OAuth app's key and callback URL; the app's
    secret and the Secret blocks' values travel as secrets until the body is built.
    """
    app = blocks.oauth_app
    return InstanceRequest(
        element_key=element_key,
        name=name,
        code=code,
        configuration={
            **configuration,
            "oauth.api.key": app.api_key,
            "oauth.callback.url": app.callback_url,
        },
        secret_configuration={"oauth.api.secret": app.api_secret, **blocks.secret_configuration},
        tags=tags,
    )


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
    credentials = await load_block(
        OpenConnectorsCredentials, request.credentials_block, "credentials_block"
    )
    oauth_app = await load_block(OAuthAppCredentials, request.oauth_app_block, "oauth_app_block")
    secrets = await load_secret_configuration(request.secret_configuration)
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


async def load_secret_configuration(names: dict[str, str]) -> dict[str, SecretStr]:
    """Load the Secret blocks named in `{configuration key: Secret block name}`.

    Raises:
        ConfigurationError: A Secret block is missing or invalid.
    """
    secrets: dict[str, SecretStr] = {}
    for key, block_name in names.items():
        secret = await load_block(Secret, block_name, f"secret_configuration[{key!r}]")
        secrets[key] = SecretStr(_secret_text(secret))
    return secrets


async def load_block(block_type: type[B], name: str, parameter: str) -> B:
    """Load a block by name, turning Prefect's errors into a message for the person.

    Args:
        block_type: The block class.
        name: The block document's name.
        parameter: The parameter that named it, quoted in the message.

    Raises:
        ConfigurationError: No such block, or it cannot be read as `block_type`.
    """
    try:
        return await block_type.aload(name)
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, ValueError) and _NOT_FOUND in str(exc):
            raise ConfigurationError(
                f"No {block_type.get_block_type_name()} block named '{name}' ({parameter}). "
                "Create it in the Prefect UI under Blocks, or pass the name of an existing one."
            ) from None
        raise ConfigurationError(
            f"The block '{name}' ({parameter}) holds values that are not valid: "
            f"{_validation_problems(exc)}. Edit it in the Prefect UI under Blocks."
        ) from None


def _validation_problems(exc: BaseException) -> str:
    """What is wrong with a block's stored values, without quoting them (they may be secret)."""
    error = exc if isinstance(exc, ValidationError) else exc.__cause__
    if not isinstance(error, ValidationError):
        return type(exc).__name__
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors(include_input=False, include_url=False)
    )


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
