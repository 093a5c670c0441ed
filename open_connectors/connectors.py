"""What each connector needs, and the checks made before the consent step.

Any OAuth 2.0 connector of the platform is accepted: `resolve_connector` reads the
connector's own definition (`GET /elements/{keyOrId}`), and `prepare_configuration`
checks the given configuration against it (required keys, unknown keys, secret
fields) and fills its defaults. A hand-written `ConnectorProfile` in `PROFILES` is an
override on top of the definition: it adds normalizers of values (the Keap family's
`infusionsoft.server` check), examples and help text.

    what is checked              any connector (definition)     a profile adds
    key known to the platform    yes, in the platform's words   -
    OAuth 2.0 authentication     yes                            -
    required keys                yes (oauth.* from the app)     more required keys
    unknown keys                 yes, nearest key suggested     -
    secret fields                PASSWORD type or secret key    -
    defaults                     the definition's               its own, preferred
    values                       length, printable              normalizers (server)

The synchronous `profile_for` and `prepare_configuration(profile, ...)` keep working
for connectors with a profile, before any network call.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from open_connectors.definitions import (
    ConfigurationField,
    ConnectorDefinition,
    check_configuration_keys,
    check_oauth2,
    definition_defaults,
    looks_secret,
    missing_required,
)
from open_connectors.errors import ConfigurationError
from open_connectors.regions import is_loopback_host

if TYPE_CHECKING:
    from open_connectors.client import OpenConnectorsClient

__all__ = [
    "PROFILES",
    "ConnectorProfile",
    "ConnectorSpec",
    "hub_for",
    "looks_secret",
    "prepare_configuration",
    "profile_for",
    "resolve_connector",
]

ELEMENT_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{1,63}$")
MAX_INSTANCE_NAME_LENGTH = 200
MAX_TAG_LENGTH = 100
MAX_TAGS = 20
MAX_CONFIGURATION_VALUE_LENGTH = 2000
_CONFIG_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_INFUSIONSOFT_HOST = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\.infusionsoft\.com$")

Normalizer = Callable[[str], str]


def normalize_infusionsoft_server(value: str) -> str:
    """Normalize an Infusionsoft account host to `dt123.infusionsoft.com`.

    Accepts `dt123.infusionsoft.com` and `https://dt123.infusionsoft.com/`.

    Raises:
        ConfigurationError: The value is not an Infusionsoft account host.
    """
    text = value.strip()
    host = text.lower()
    if "://" in host:
        parts = urlsplit(host)
        if parts.scheme != "https" or parts.path not in ("", "/") or parts.query or parts.port:
            host = ""
        else:
            host = parts.hostname or ""
    host = host.rstrip("/")
    if not _INFUSIONSOFT_HOST.match(host):
        raise ConfigurationError(
            f"infusionsoft.server {text[:100]!r} is not an Infusionsoft account host. Give the "
            "host of your account URL, like 'dt123.infusionsoft.com' or "
            "'https://dt123.infusionsoft.com'."
        )
    return host


@dataclass(frozen=True)
class ConnectorProfile:
    """What a connector needs from the person authorizing it.

    Attributes:
        key: The connector (element) key.
        name: A human name for messages.
        hub: The hub used for hub calls (`ping`); the platform ignores it, any value works.
        required_configuration: Configuration keys that must be given.
        normalizers: Per configuration key, a function that checks and normalizes a value.
        default_configuration: Values sent unless the person gives their own.
        secret_configuration_keys: Secret configuration the connector knows of, documented
            for users (given through Prefect Secret blocks).
        examples: Per configuration key, an example value for messages.
        help: Per configuration key, a sentence on where to find the value.
    """

    key: str
    name: str
    hub: str
    required_configuration: tuple[str, ...] = ()
    normalizers: Mapping[str, Normalizer] = field(default_factory=dict)
    default_configuration: Mapping[str, str] = field(default_factory=dict)
    secret_configuration_keys: tuple[str, ...] = ()
    examples: Mapping[str, str] = field(default_factory=dict)
    help: Mapping[str, str] = field(default_factory=dict)


_SERVER_HELP = "the host of your Keap account URL (Keap: Settings > Application > Your URL)"


def _infusionsoft(key: str, name: str, hub: str, *, server_required: bool) -> ConnectorProfile:
    return ConnectorProfile(
        key=key,
        name=name,
        hub=hub,
        required_configuration=("infusionsoft.server",) if server_required else (),
        normalizers={"infusionsoft.server": normalize_infusionsoft_server},
        default_configuration={"filter.response.nulls": "true"},
        secret_configuration_keys=("infusionsoft.private.key",),
        examples={"infusionsoft.server": "dt123.infusionsoft.com"},
        help={"infusionsoft.server": _SERVER_HELP},
    )


PROFILES: dict[str, ConnectorProfile] = {
    profile.key: profile
    for profile in (
        _infusionsoft("infusionsofterp", "Infusionsoft ERP", "erp", server_required=True),
        _infusionsoft("infusionsoftcrm", "Infusionsoft CRM", "crm", server_required=True),
        _infusionsoft(
            "infusionsoftmarketing",
            "Infusionsoft Marketing Automation",
            "marketing",
            server_required=True,
        ),
        # The documented create body of Online Sales has only the oauth.* keys and
        # document.tagging: no server (devportal infusionsoft-ecommerce-create-instance.md).
        _infusionsoft(
            "infusionsoftecommerce",
            "Infusionsoft Online Sales",
            "ecommerce",
            server_required=False,
        ),
        ConnectorProfile(
            key="infusionsoftrest",
            name="Infusionsoft REST",
            hub="crm",
            default_configuration={"filter.response.nulls": "true"},
        ),
    )
}


# OAuth 2.0 connectors of the catalogue the run form offers by name, beside the profiled
# ones. Any other key works as well: the platform's definition is the profile then.
# Sources: the connectors' devportal pages (hubspot-crm, zendesk, quickbooksonline
# "Authenticate with OAuth 2.0"), as in the sandbox's definitions.
CATALOGUE: dict[str, str] = {
    **{key: profile.name for key, profile in PROFILES.items()},
    "hubspotcrm": "HubSpot CRM",
    "quickbooks": "QuickBooks Online",
    "zendesk": "Zendesk",
}


def connector_label(key: str) -> str:
    """How the run form names a catalogue connector: `Name (key)`."""
    return f"{CATALOGUE[key]} ({key})"


def key_of_label(value: str) -> str:
    """The key a run-form label stands for; any other value is returned as given."""
    labels = {connector_label(key): key for key in CATALOGUE}
    return labels.get(value.strip(), value) if isinstance(value, str) else value


def validate_element_key(value: str) -> str:
    """Check the form of a connector key.

    Raises:
        ConfigurationError: The key is not of the platform's form.
    """
    key = (value or "").strip()
    if not ELEMENT_KEY_PATTERN.match(key):
        known = ", ".join(sorted(PROFILES))
        raise ConfigurationError(
            f"element_key {value[:80]!r} is not a connector key: use lowercase letters, digits, "
            f"'-' or '_' (2-64 characters), for example one of: {known}."
        )
    return key


def profile_for(element_key: str) -> ConnectorProfile:
    """The profile of a known connector.

    Raises:
        ConfigurationError: The key is malformed or names no known connector.
    """
    key = validate_element_key(element_key)
    profile = PROFILES.get(key)
    if profile is None:
        raise ConfigurationError(
            f"Unknown connector {key!r}: use one of {', '.join(sorted(PROFILES))}. To authorize "
            "another OAuth 2.0 connector, add its profile (hub, required configuration) to "
            "PROFILES in open_connectors/connectors.py."
        )
    return profile


def hub_for(element_key: str) -> str:
    """The hub for hub paths of a connector, without asking the platform.

    The profile's hub when there is one; otherwise the key itself, which works as well:
    the platform ignores the hub segment (the instance token picks the connector).
    """
    profile = PROFILES.get(element_key)
    return profile.hub if profile else element_key


def validate_instance_name(value: str) -> str:
    """Check an instance name: non-empty, printable, at most 200 characters.

    Raises:
        ConfigurationError: The name is empty, too long or holds control characters.
    """
    name = (value or "").strip()
    if not name:
        raise ConfigurationError("instance_name is empty: give the instance a name.")
    if len(name) > MAX_INSTANCE_NAME_LENGTH:
        raise ConfigurationError(
            f"instance_name is {len(name)} characters long; the limit is "
            f"{MAX_INSTANCE_NAME_LENGTH}."
        )
    if any(unicodedata.category(char) in ("Cc", "Cf", "Cs") for char in name):
        raise ConfigurationError(
            "instance_name holds control or invisible characters; use printable text."
        )
    if "<" in name or ">" in name:
        raise ConfigurationError("instance_name must not contain '<' or '>'.")
    return name


def validate_tags(values: list[str] | None) -> list[str]:
    """Check instance tags: at most 20 printable strings of at most 100 characters.

    Raises:
        ConfigurationError: A tag is empty, too long or holds control characters.
    """
    tags: list[str] = []
    for raw in values or []:
        tag = str(raw).strip()
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise ConfigurationError(f"Tag {raw!r} must be 1-{MAX_TAG_LENGTH} characters long.")
        if any(unicodedata.category(char) in ("Cc", "Cf", "Cs") for char in tag):
            raise ConfigurationError(f"Tag {tag[:40]!r} holds control characters.")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise ConfigurationError(f"{len(tags)} tags given; the limit is {MAX_TAGS}.")
    return tags


class ConnectorSpec(BaseModel):
    """A connector as this project uses it: the platform's definition, plus its profile.

    Plain data (JSON-serializable), so a flow can keep it as a persisted task result and
    read it back on the re-run after a resume; the profile (code) is looked up by key.

    Attributes:
        key: The connector key, as the platform spells it.
        name: The name for messages and the consent link (the profile's, else the platform's).
        hub: The hub for hub calls (`ping`); the platform ignores it, any value works.
        definition: The platform's definition of the connector.
    """

    model_config = ConfigDict(frozen=True)

    key: str
    name: str
    hub: str
    definition: ConnectorDefinition

    @property
    def profile(self) -> ConnectorProfile | None:
        """The hand-written profile of the connector, if there is one."""
        return PROFILES.get(self.key)

    @classmethod
    def from_definition(cls, definition: ConnectorDefinition) -> ConnectorSpec:
        """Merge a definition with the connector's profile (the profile's name and hub win).

        Raises:
            NotOAuth2ConnectorError: The connector does not authenticate with OAuth 2.0.
        """
        check_oauth2(definition)
        profile = PROFILES.get(definition.key)
        return cls(
            key=definition.key,
            name=profile.name if profile else definition.display_name,
            hub=(profile.hub if profile else None) or definition.hub or definition.key,
            definition=definition,
        )


async def resolve_connector(client: OpenConnectorsClient, element_key: str) -> ConnectorSpec:
    """Read a connector's definition from the platform and merge it with its profile.

    Args:
        client: A platform client (the account's credentials).
        element_key: The connector key, e.g. `infusionsofterp` or `zendesk`.

    Raises:
        ConfigurationError: The key is malformed (no network call then).
        ConnectorNotFoundError: The platform does not know the key (its words quoted).
        NotOAuth2ConnectorError: The connector does not authenticate with OAuth 2.0.
    """
    key = validate_element_key(element_key)
    definition = await client.get_connector_definition(key)
    return ConnectorSpec.from_definition(definition)


def prepare_configuration(
    profile: ConnectorProfile | ConnectorSpec,
    configuration: Mapping[str, str] | None,
    secret_configuration_keys: Iterable[str] | None = None,
) -> dict[str, str]:
    """Check and normalize the plain (non-secret) instance configuration.

    Given a `ConnectorSpec`, the checks are the connector's definition (required keys,
    unknown keys, secret fields, defaults) plus its profile, if any; given a
    `ConnectorProfile` (no definition at hand), the profile's alone.

    Args:
        profile: The connector's spec, or (without a definition) its profile.
        configuration: Configuration given by the person, e.g. `{"infusionsoft.server": ...}`.
        secret_configuration_keys: Keys that will come from Secret blocks (they count as given).

    Returns:
        The configuration to send: defaults (the definition's, then the profile's), then
        the given values, normalized.

    Raises:
        ConfigurationError: A key is malformed, unknown, holds a secret, is missing, or a
            value is bad.
    """
    if isinstance(profile, ConnectorSpec):
        return _prepare_for_spec(profile, configuration, list(secret_configuration_keys or []))
    given = dict(configuration or {})
    secret_keys = set(secret_configuration_keys or [])
    prepared = dict(profile.default_configuration)
    for key, raw in given.items():
        _check_key_form(key)
        _refuse_secret_key(key)
        value = _checked_value(key, raw)
        normalizer = profile.normalizers.get(key)
        prepared[key] = normalizer(value) if normalizer else value.strip()
    missing = [
        key
        for key in profile.required_configuration
        if key not in prepared and key not in secret_keys
    ]
    if missing:
        hint = ", ".join(f"{key!r}: {profile.examples.get(key, '...')!r}" for key in missing)
        raise ConfigurationError(
            f"The {profile.name} connector needs configuration {', '.join(missing)}: pass "
            f"configuration={{{hint}}}."
        )
    return prepared


def _prepare_for_spec(
    spec: ConnectorSpec, configuration: Mapping[str, str] | None, secret_keys: list[str]
) -> dict[str, str]:
    """`prepare_configuration` against the platform's definition, with the profile on top."""
    profile = spec.profile
    given: dict[str, str] = {}
    for key, raw in (configuration or {}).items():
        _check_key_form(key)
        value = _checked_value(key, raw).strip()
        if value:  # a blank value (e.g. a deployment's placeholder) counts as not given
            given[key] = value
    for key in secret_keys:
        _check_key_form(key)
    check_configuration_keys(spec.definition, given, secret_keys)
    for key in given:
        _refuse_secret_key(key)
    normalizers = profile.normalizers if profile else {}
    prepared = definition_defaults(spec.definition, [*given, *secret_keys])
    if profile:
        prepared.update(
            (key, value)
            for key, value in profile.default_configuration.items()
            if key not in secret_keys
        )
    for key, value in given.items():
        normalizer = normalizers.get(key)
        prepared[key] = normalizer(value) if normalizer else value
    provided = [*prepared, *secret_keys]
    missing = [(item.key, item) for item in missing_required(spec.definition, provided)]
    for key in profile.required_configuration if profile else ():
        if key not in provided and key not in dict(missing):
            missing.append((key, spec.definition.field(key)))
    if missing:
        raise ConfigurationError(_missing_message(spec, missing))
    return prepared


def _missing_message(
    spec: ConnectorSpec, missing: list[tuple[str, ConfigurationField | None]]
) -> str:
    """Which required keys are missing, what each one is, and how to pass them."""
    profile = spec.profile
    examples = profile.examples if profile else {}
    helps = profile.help if profile else {}
    described: list[str] = []
    plain: list[str] = []
    secret: list[str] = []
    for key, item in missing:
        about = (
            helps.get(key) or (item.description if item else None) or (item.name if item else None)
        )
        described.append(f"{key!r}" + (f" ({about.rstrip('. ')})" if about else ""))
        if (item is not None and item.is_secret) or looks_secret(key):
            secret.append(f"{key!r}: '<secret block name>'")
        else:
            plain.append(f"{key!r}: {examples.get(key, '...')!r}")
    how = []
    if plain:
        how.append(f"configuration={{{', '.join(plain)}}}")
    if secret:
        how.append(f"secret_configuration={{{', '.join(secret)}}}")
    return (
        f"The {spec.name} connector needs configuration {', '.join(described)}: pass "
        f"{' and '.join(how)}."
    )


def _check_key_form(key: object) -> None:
    """Refuse a malformed key, and the `oauth.*` keys (set from the OAuth app block)."""
    if not isinstance(key, str) or not _CONFIG_KEY_PATTERN.match(key):
        raise ConfigurationError(f"Configuration key {str(key)[:80]!r} is malformed.")
    if key.startswith("oauth."):
        raise ConfigurationError(
            f"Configuration key {key!r} is set from the OAuth app block; remove it from "
            "configuration."
        )


def _refuse_secret_key(key: str) -> None:
    """Refuse a secret-looking key given as a plain parameter."""
    if looks_secret(key):
        raise ConfigurationError(
            f"Configuration key {key!r} holds a secret, and flow parameters are stored in "
            "plain text. Save the value in a Prefect Secret block and pass "
            f"secret_configuration={{{key!r}: '<secret block name>'}} instead."
        )


def _checked_value(key: str, raw: object) -> str:
    """A configuration value as text: bounded in length, no control characters."""
    value = "" if raw is None else str(raw)
    if len(value) > MAX_CONFIGURATION_VALUE_LENGTH or any(
        unicodedata.category(char) == "Cc" for char in value
    ):
        raise ConfigurationError(f"Configuration value of {key!r} is too long or malformed.")
    return value


def validate_callback_url(value: str) -> str:
    """Check an OAuth callback URL: HTTPS (the provider requires it), or HTTP on loopback.

    Raises:
        ConfigurationError: The URL is not absolute HTTPS, or carries a fragment or credentials.
    """
    url = (value or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"callback_url {url[:200]!r} is not an absolute URL. Use the callback URL registered "
            "with the provider, e.g. 'https://auth.cloudelements.io/oauth'."
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"callback_url {url[:200]!r} must use https: the provider (Keap) refuses plain http "
            "redirects. Plain http is accepted only on loopback, for local development."
        )
    if parts.fragment or parts.username or parts.password:
        raise ConfigurationError("callback_url must not carry a fragment or credentials.")
    return url
