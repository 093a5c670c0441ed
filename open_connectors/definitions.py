"""A connector's own definition (`GET /elements/{keyOrId}`) and the checks made against it.

The platform describes every connector itself: its hub, its authentication and the
`configuration` fields an instance takes (`key`, `name`, `required`, `defaultValue`,
`type`, `hideFromConsole`, …). The checks here need no Prefect and no network: they
refuse what the platform would refuse, earlier and in words a person can act on.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from open_connectors.errors import ConfigurationError, NotOAuth2ConnectorError

__all__ = [
    "OAUTH2",
    "ConfigurationField",
    "ConnectorDefinition",
    "NotOAuth2ConnectorError",
    "check_configuration_keys",
    "check_oauth2",
    "definition_defaults",
    "looks_secret",
    "missing_required",
    "nearest_key",
]

OAUTH2 = "oauth2"
# Keys set from the OAuth app block (and by the platform during the code exchange).
OAUTH_PREFIX = "oauth."
# Field types whose values are secrets. The platform masks PASSWORD fields when it echoes
# an instance; the other names are spellings seen in element definitions.
SECRET_FIELD_TYPES = frozenset({"PASSWORD", "SECRET", "TEXTFIELD_SECRET", "PASSWORD_FIELD"})
# Configuration keys that hold secrets: refused as plain parameters (Prefect stores
# parameters in clear), accepted only through Secret blocks.
SECRET_KEY_MARKERS = ("secret", "password", "private.key", "token", "api.key")
_NEAREST_CUTOFF = 0.75

_AUTHENTICATION_NAMES = {
    "oauth2": "OAuth 2.0",
    "oauth1": "OAuth 1.0a",
    "basic": "basic (user name and password or API key)",
    "apikey": "API key",
    "custom": "custom (credentials in the instance configuration)",
    "awsv4": "AWS Signature Version 4",
    "none": "none",
}


def looks_secret(configuration_key: str) -> bool:
    """Whether a configuration key holds a secret (and so must come from a Secret block)."""
    lowered = configuration_key.lower()
    return any(marker in lowered for marker in SECRET_KEY_MARKERS)


class ConfigurationField(BaseModel):
    """One entry of a definition's `configuration` array, read leniently.

    Attributes:
        key: The configuration key, e.g. `infusionsoft.server`.
        name: The name the platform's console shows.
        description: The platform's description of the field.
        required: Whether an instance needs it.
        default_value: The value used when none is given (as text), if any.
        type: The field type, e.g. `TEXTFIELD_32`, `PASSWORD`, `BOOLEAN`, `SELECTION`.
        hide_from_console: Hidden from the platform's console (internal to the connector).
        internal: Marked internal by the platform (never set by users).
        display_order: The console's order of the field.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    key: str
    name: str | None = None
    description: str | None = None
    required: bool = False
    default_value: str | None = Field(default=None, alias="defaultValue")
    type: str | None = None
    hide_from_console: bool = Field(default=False, alias="hideFromConsole")
    internal: bool = False
    display_order: int | None = Field(default=None, alias="displayOrder")

    @field_validator("default_value", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        # The platform sends defaults as strings, booleans or numbers alike.
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return None if value == "" else value

    @field_validator("required", "hide_from_console", "internal", mode="before")
    @classmethod
    def _as_bool(cls, value: Any) -> Any:
        return False if value is None else value

    @property
    def is_secret(self) -> bool:
        """Whether the value is a secret: a secret field type, or a secret-looking key."""
        kind = (self.type or "").upper()
        return kind in SECRET_FIELD_TYPES or "PASSWORD" in kind or looks_secret(self.key)

    @property
    def is_oauth(self) -> bool:
        """Whether the key is set from the OAuth app block (`oauth.*`)."""
        return self.key.startswith(OAUTH_PREFIX)

    @property
    def is_hidden(self) -> bool:
        """Hidden from the console or internal: set by the platform, not by a person."""
        return self.hide_from_console or self.internal

    @property
    def label(self) -> str:
        """How to name the field in a message: `key` plus the console's name."""
        if self.name and self.name != self.key:
            return f"{self.key!r} ({self.name})"
        return repr(self.key)


class ConnectorDefinition(BaseModel):
    """A connector as the platform defines it: `GET /elements/{keyOrId}`, read leniently.

    Attributes:
        id: The numeric id (varies between environments).
        key: The connector key, e.g. `infusionsofterp`.
        name: The display name.
        hub: The hub of its resources, e.g. `crm`.
        description: The platform's description.
        authentication_type: `authentication.type`, e.g. `oauth2`, `oauth1`, `basic`.
        type_oauth: The platform's `typeOauth` flag (not a reliable sign of OAuth 2.0).
        configuration: The configuration fields an instance takes.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    id: int | None = None
    key: str
    name: str | None = None
    hub: str | None = None
    description: str | None = None
    authentication_type: str | None = None
    type_oauth: bool | None = Field(default=None, alias="typeOauth")
    configuration: tuple[ConfigurationField, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        authentication = data.pop("authentication", None)
        if "authentication_type" not in data and isinstance(authentication, dict):
            data["authentication_type"] = authentication.get("type")
        fields = data.get("configuration")
        if isinstance(fields, list):
            # Entries without a key say nothing usable; the platform adds fields freely.
            data["configuration"] = [
                item for item in fields if isinstance(item, dict) and item.get("key")
            ]
        elif not isinstance(fields, tuple):
            data["configuration"] = []
        return data

    @property
    def display_name(self) -> str:
        """The connector's name, or its key when the platform gives none."""
        return self.name or self.key

    @property
    def is_oauth2(self) -> bool:
        """Whether instances are authorized through OAuth 2.0."""
        return (self.authentication_type or "").lower() == OAUTH2

    @property
    def authentication_name(self) -> str:
        """The authentication type in words, e.g. `basic (user name and password …)`."""
        kind = (self.authentication_type or "").strip()
        if not kind:
            return "not stated by the platform"
        return _AUTHENTICATION_NAMES.get(kind.lower(), kind)

    def field(self, key: str) -> ConfigurationField | None:
        """The field with this key, if the connector has one."""
        return next((item for item in self.configuration if item.key == key), None)

    @property
    def keys(self) -> list[str]:
        """Every configuration key the connector knows, in the console's order."""
        ordered = sorted(
            self.configuration,
            key=lambda item: (item.display_order is None, item.display_order or 0),
        )
        return [item.key for item in ordered]


def check_oauth2(definition: ConnectorDefinition) -> None:
    """Refuse a connector that does not authenticate with OAuth 2.0.

    Raises:
        NotOAuth2ConnectorError: Names the connector's authentication and what this flow is for.
    """
    if definition.is_oauth2:
        return
    raise NotOAuth2ConnectorError(
        f"The {definition.display_name} connector ('{definition.key}') authenticates with "
        f"{definition.authentication_name}, not OAuth 2.0. This flow authorizes OAuth 2.0 "
        "connectors only (a consent page, then an authorization code); create instances of "
        "this connector in Open Connectors itself, with its own credentials.",
        authentication_type=definition.authentication_type,
    )


def nearest_key(key: str, known: Iterable[str]) -> str | None:
    """The known key closest to a mistyped one, when one is close enough."""
    matches = difflib.get_close_matches(key, list(known), n=1, cutoff=_NEAREST_CUTOFF)
    return matches[0] if matches else None


def check_configuration_keys(
    definition: ConnectorDefinition,
    configuration: Mapping[str, str],
    secret_keys: Iterable[str],
) -> None:
    """Refuse keys the connector does not know, and secret fields given in plain text.

    A definition without configuration fields says nothing about keys: then only the
    secret check applies (by key).

    Args:
        definition: The connector's definition.
        configuration: The plain configuration given by the person.
        secret_keys: Keys given through Secret blocks.

    Raises:
        ConfigurationError: An unknown key (with the nearest known one), or a secret field.
    """
    known = definition.keys
    for key, source in [(key, "configuration") for key in configuration] + [
        (key, "secret_configuration") for key in secret_keys
    ]:
        field = definition.field(key)
        if known and field is None:
            suggestion = nearest_key(key, known)
            hint = f" Did you mean {suggestion!r}?" if suggestion else ""
            settable = [k for k in known if not k.startswith(OAUTH_PREFIX)]
            raise ConfigurationError(
                f"The {definition.display_name} connector has no configuration key {key!r} "
                f"({source}).{hint} Its keys are: {', '.join(settable) or 'only oauth.*'}."
            )
        if source == "configuration" and field is not None and field.is_secret:
            raise ConfigurationError(
                f"Configuration key {key!r} of the {definition.display_name} connector holds a "
                f"secret ({field.type or 'secret'} field), and flow parameters are stored in "
                "plain text. Save the value in a Prefect Secret block and pass "
                f"secret_configuration={{{key!r}: '<secret block name>'}} instead."
            )


def definition_defaults(definition: ConnectorDefinition, given: Iterable[str]) -> dict[str, str]:
    """The definition's default values for the keys not given.

    Not filled: `oauth.*` keys (set from the OAuth app block), secret fields (only
    through Secret blocks), and fields without a default (hidden internal fields among
    them: the platform sets those itself).
    """
    taken = set(given)
    return {
        item.key: item.default_value
        for item in definition.configuration
        if item.key not in taken
        and item.default_value is not None
        and not item.is_oauth
        and not item.is_secret
    }


def missing_required(
    definition: ConnectorDefinition, given: Iterable[str]
) -> list[ConfigurationField]:
    """The required fields a person must still give.

    `oauth.*` keys count as given (the OAuth app block sets them); hidden or internal
    fields without a default are the platform's own (it sets them during the code
    exchange), so they are not asked for.
    """
    taken = set(given)
    return [
        item
        for item in definition.configuration
        if item.required
        and item.key not in taken
        and not item.is_oauth
        and not (item.is_hidden and item.default_value is None)
    ]
