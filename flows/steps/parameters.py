"""The checked form of an authorization's parameters.

Everything here runs before the first network call to the platform: a person who
mistypes a server name, a block name or a connector key learns it at once, in words.
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import BaseModel, ConfigDict

from open_connectors import ConfigurationError, ConnectorSpec, check_user_tags
from open_connectors.connectors import (
    PROFILES,
    hub_for,
    prepare_configuration,
    validate_element_key,
    validate_instance_name,
    validate_tags,
)

BLOCK_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
DEFAULT_CREDENTIALS_BLOCK = "open-connectors"
DEFAULT_OAUTH_APP_BLOCK = "infusionsoft-oauth-app"
DEFAULT_TIMEOUT_MINUTES = 24 * 60
MAX_TIMEOUT_MINUTES = 60 * 24 * 30


class ConsentSubject(BaseModel):
    """What a consent link is about: the instance, its connector and its saved block.

    The common part of a new authorization (`AuthorizationParameters`) and of a
    re-authorization (`flows.reauthorize.ReauthorizationParameters`); `get_redirect_url`
    needs no more than this.
    """

    model_config = ConfigDict(frozen=True)

    instance_name: str
    element_key: str
    instance_block: str
    connector_name: str


class AuthorizationParameters(ConsentSubject):
    """What one authorization asks for, checked and normalized.

    Build it with `AuthorizationParameters.build(...)` (every check that needs no
    network), then complete it with the connector's definition (`for_connector`), which
    checks the configuration against what the platform says the connector needs. Both
    raise `ConfigurationError` with a message for the person.
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
    ) -> AuthorizationParameters:
        """Check and normalize the flow's parameters.

        Raises:
            ConfigurationError: A parameter is unusable; the message says which and why.
        """
        name = validate_instance_name(instance_name)
        key = validate_element_key(element_key)
        secrets = check_secret_configuration(secret_configuration)
        timeout_seconds = check_timeout_minutes(timeout_minutes)
        given = dict(configuration or {})
        profile = PROFILES.get(key)
        if profile is not None:
            # A known connector's values are checked before any network call.
            prepare_configuration(profile, given, list(secrets))
        return cls(
            instance_name=name,
            element_key=key,
            connector_name=profile.name if profile else key,
            hub=hub_for(key),
            configuration=given,
            secret_configuration=secrets,
            tags=check_user_tags(validate_tags(tags)),
            credentials_block=check_block_name(credentials_block, "credentials_block"),
            oauth_app_block=check_block_name(oauth_app_block, "oauth_app_block"),
            instance_block=check_block_name(
                instance_block or block_name_for(name), "instance_block"
            ),
            timeout_seconds=timeout_seconds,
        )

    def for_connector(self, spec: ConnectorSpec) -> AuthorizationParameters:
        """These parameters with the configuration checked against the connector's definition.

        Raises:
            ConfigurationError: A required field is missing, a key is unknown, or a
                secret field was given as plain configuration.
        """
        return self.model_copy(
            update={
                "element_key": spec.key,
                "connector_name": spec.name,
                "hub": spec.hub,
                "configuration": prepare_configuration(
                    spec, self.configuration, list(self.secret_configuration)
                ),
            }
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
