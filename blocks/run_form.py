"""Parameter types that give the flows a typed run form in the Prefect UI.

Each type is what the flow receives (a block *name*, a `dict[str, str]`, a list of
tags) with a JSON schema that makes the UI draw the right field:

- a block parameter carries `block_type_slug`, so the UI draws a picker among the
  saved blocks of that type and sends `{"$ref": {"block_document_id": …}}`. Before
  the flow runs, Prefect's engine loads that reference into the block itself
  (`Flow.validate_parameters` → `Block.load_from_ref`); the validator here turns the
  block back into its name. A plain name (API callers, the event trigger's
  `"{{ event.payload.block_name }}"`, the design card's `credentials_block: str`)
  is kept as given. The schema has no `type`, so the server's schema check lets both
  shapes through (it adds the `$ref` shape only to block *definitions*).
- the configuration is an object with the connector's known keys as typed fields
  (pattern, help text, example) and any other key as a string, so the plain
  `dict[str, str]` of the design card still validates.
- tags are a list of strings; `None` becomes `[]`, so the form needs no None switch.

The flows check the values themselves afterwards (`flows.steps.parameters`); these
types only shape the form and turn what the form sends into names and dicts.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from pydantic import BeforeValidator, WithJsonSchema

from blocks.credentials import OAuthAppCredentials, OpenConnectorsCredentials
from blocks.instance import ConnectorInstance
from open_connectors.connectors import CATALOGUE, connector_label, key_of_label

INFUSIONSOFT_SERVER_KEY = "infusionsoft.server"
INFUSIONSOFT_PRIVATE_KEY = "infusionsoft.private.key"
# What normalize_infusionsoft_server accepts, as an ECMA pattern the UI and the
# server both check: the host, optionally as an https URL with a trailing slash.
# Empty passes: a re-authorization then reuses the saved configuration, and an
# authorization says in its own words that the server is missing.
INFUSIONSOFT_SERVER_PATTERN = (
    r"^\s*((https://)?[a-zA-Z0-9][a-zA-Z0-9-]{0,62}\.infusionsoft\.com/?)?\s*$"
)


def block_name(value: Any, block_type: type[Block], parameter: str) -> str:
    """The block document name a block parameter stands for.

    Args:
        value: A name, a loaded block (what the engine makes of the picker's value), or an
            unresolved `{"$ref": …}` as stored in a flow run's parameters.
        block_type: The block class the parameter expects.
        parameter: The parameter's name, for the message.

    Returns:
        The block document name; a plain name is returned as given.

    Raises:
        ValueError: A block of another type, an anonymous block, or no name at all.
    """
    if isinstance(value, dict) and "$ref" in value:
        # Read back from stored parameters: load the reference the way the engine does.
        value = Block.load_from_ref(value["$ref"], _sync=True)  # type: ignore[call-arg]
    if isinstance(value, Block):
        if not isinstance(value, block_type):
            raise ValueError(
                f"{parameter} must be a {block_type.get_block_type_name()} block, not a "
                f"{type(value).get_block_type_name()} block."
            )
        name = value._block_document_name
        if not name:
            raise ValueError(f"{parameter} must be a saved block with a name.")
        return name
    if isinstance(value, str):
        return value
    raise ValueError(f"{parameter} must be a block name or a saved block.")


def _block_schema(block_type: type[Block], description: str) -> dict[str, Any]:
    return {
        "title": block_type.get_block_type_name(),
        "description": description,
        "block_type_slug": block_type.get_block_type_slug(),
    }


def _block_name_type(block_type: type[Block], parameter: str, description: str) -> Any:
    return Annotated[
        str,
        BeforeValidator(lambda value: block_name(value, block_type, parameter)),
        WithJsonSchema(_block_schema(block_type, description)),
    ]


CredentialsBlockName = _block_name_type(
    OpenConnectorsCredentials,
    "credentials_block",
    "The Open Connectors account (its user and organization secrets).",
)
OAuthAppBlockName = _block_name_type(
    OAuthAppCredentials,
    "oauth_app_block",
    "The provider's OAuth app registered with Open Connectors (client id, secret, callback).",
)
InstanceBlockName = _block_name_type(
    ConnectorInstance,
    "instance_block",
    "The saved connector instance.",
)


ConnectorKey = Annotated[
    str,
    BeforeValidator(key_of_label),
    WithJsonSchema(
        {
            "title": "Connector",
            "description": (
                "The connector: one of the catalogue by name, or any other OAuth 2.0 "
                "connector's key (the platform's own definition is then checked)."
            ),
            # No `type` at this level: the UI draws the alternatives as a switch, and the
            # server's check lets a label or any key through.
            "anyOf": [
                {
                    "title": "Catalogue",
                    "type": "string",
                    "enum": [connector_label(key) for key in sorted(CATALOGUE)],
                },
                {"title": "Any connector key", "type": "string", "minLength": 2},
            ],
        }
    ),
]


def _configuration(value: Any) -> dict[str, str] | None:
    # The form sends {} or leaves out empty fields; None means "not given"
    # (a re-authorization then reuses the configuration the instance was created with).
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("configuration must be an object of configuration keys and values.")
    given = {str(key): "" if item is None else str(item) for key, item in value.items()}
    given = {key: item for key, item in given.items() if item.strip()}
    return given or None


Configuration = Annotated[
    dict[str, str] | None,
    BeforeValidator(_configuration),
    WithJsonSchema(
        {
            "type": "object",
            "title": "Configuration",
            "description": (
                "Non-secret instance configuration. Infusionsoft: the account's server. "
                "Other connectors: add their configuration keys."
            ),
            "properties": {
                INFUSIONSOFT_SERVER_KEY: {
                    "type": "string",
                    "title": "Infusionsoft server",
                    "description": (
                        "The host of the Infusionsoft account URL, e.g. dt123.infusionsoft.com."
                    ),
                    "pattern": INFUSIONSOFT_SERVER_PATTERN,
                    "examples": ["dt123.infusionsoft.com"],
                },
            },
            "additionalProperties": {"type": "string"},
        }
    ),
]


def _secret_configuration(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("secret_configuration must map configuration keys to Secret blocks.")
    names = {
        str(key): block_name(item, Secret, f"secret_configuration[{key!r}]")
        for key, item in value.items()
        if item not in (None, "")
    }
    return names or None


SecretConfiguration = Annotated[
    dict[str, str] | None,
    BeforeValidator(_secret_configuration),
    WithJsonSchema(
        {
            "type": "object",
            "title": "Secret configuration",
            "description": (
                "Secret instance configuration, each value a saved Prefect Secret block "
                "(flow parameters are stored in plain text, Secret blocks are not)."
            ),
            "properties": {
                INFUSIONSOFT_PRIVATE_KEY: {
                    **_block_schema(
                        Secret, "The Secret block holding the Infusionsoft encrypted key."
                    ),
                    "title": "Infusionsoft encrypted key",
                },
            },
            "additionalProperties": {"type": "string"},
        }
    ),
]


def _tags(value: Any) -> Any:
    return [] if value is None else value


Tags = Annotated[
    list[str],
    BeforeValidator(_tags),
    WithJsonSchema(
        {
            "type": "array",
            "title": "Tags",
            "description": "Tags of the instance in Open Connectors.",
            "items": {"type": "string"},
            "default": [],
        }
    ),
]
