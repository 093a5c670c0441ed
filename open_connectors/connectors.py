"""What each connector needs, and the checks made before any network call.

A `ConnectorProfile` names a connector's hub, its required configuration and the
normalizers of its values. Only connectors with a profile are accepted, so a mistyped
key is refused before any network call; supporting another OAuth 2.0 connector of
the platform means adding its profile to `PROFILES` (the rest of the code is generic).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from open_connectors.errors import ConfigurationError
from open_connectors.regions import is_loopback_host

ELEMENT_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{1,63}$")
MAX_INSTANCE_NAME_LENGTH = 200
MAX_TAG_LENGTH = 100
MAX_TAGS = 20
MAX_CONFIGURATION_VALUE_LENGTH = 2000
_CONFIG_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Configuration keys that hold secrets: refused as plain parameters (Prefect stores
# parameters in clear), accepted only through Secret blocks.
_SECRET_KEY_MARKERS = ("secret", "password", "private.key", "token", "api.key")
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
    """

    key: str
    name: str
    hub: str
    required_configuration: tuple[str, ...] = ()
    normalizers: Mapping[str, Normalizer] = field(default_factory=dict)
    default_configuration: Mapping[str, str] = field(default_factory=dict)
    secret_configuration_keys: tuple[str, ...] = ()


def _infusionsoft(key: str, name: str, hub: str) -> ConnectorProfile:
    return ConnectorProfile(
        key=key,
        name=name,
        hub=hub,
        required_configuration=("infusionsoft.server",),
        normalizers={"infusionsoft.server": normalize_infusionsoft_server},
        default_configuration={"filter.response.nulls": "true"},
        secret_configuration_keys=("infusionsoft.private.key",),
    )


PROFILES: dict[str, ConnectorProfile] = {
    profile.key: profile
    for profile in (
        _infusionsoft("infusionsofterp", "Infusionsoft ERP", "erp"),
        _infusionsoft("infusionsoftcrm", "Infusionsoft CRM", "crm"),
        _infusionsoft("infusionsoftmarketing", "Infusionsoft Marketing Automation", "marketing"),
        _infusionsoft("infusionsoftecommerce", "Infusionsoft Online Sales", "ecommerce"),
        ConnectorProfile(
            key="infusionsoftrest",
            name="Infusionsoft REST",
            hub="crm",
            default_configuration={"filter.response.nulls": "true"},
        ),
    )
}


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


def looks_secret(configuration_key: str) -> bool:
    """Whether a configuration key holds a secret (and so must come from a Secret block)."""
    lowered = configuration_key.lower()
    return any(marker in lowered for marker in _SECRET_KEY_MARKERS)


def prepare_configuration(
    profile: ConnectorProfile,
    configuration: Mapping[str, str] | None,
    secret_configuration_keys: list[str] | None = None,
) -> dict[str, str]:
    """Check and normalize the plain (non-secret) instance configuration.

    Args:
        profile: The connector's profile.
        configuration: Configuration given by the person, e.g. `{"infusionsoft.server": ...}`.
        secret_configuration_keys: Keys that will come from Secret blocks (they count as given).

    Returns:
        The configuration to send: the profile's defaults, then the given values, normalized.

    Raises:
        ConfigurationError: A key is malformed, holds a secret, is missing or has a bad value.
    """
    given = dict(configuration or {})
    secret_keys = set(secret_configuration_keys or [])
    prepared = dict(profile.default_configuration)
    for key, raw in given.items():
        if not isinstance(key, str) or not _CONFIG_KEY_PATTERN.match(key):
            raise ConfigurationError(f"Configuration key {str(key)[:80]!r} is malformed.")
        if key.startswith("oauth."):
            raise ConfigurationError(
                f"Configuration key {key!r} is set from the OAuth app block; remove it from "
                "configuration."
            )
        if looks_secret(key):
            raise ConfigurationError(
                f"Configuration key {key!r} holds a secret, and flow parameters are stored in "
                "plain text. Save the value in a Prefect Secret block and pass "
                f"secret_configuration={{{key!r}: '<secret block name>'}} instead."
            )
        value = "" if raw is None else str(raw)
        if len(value) > MAX_CONFIGURATION_VALUE_LENGTH or any(
            unicodedata.category(char) == "Cc" for char in value
        ):
            raise ConfigurationError(f"Configuration value of {key!r} is too long or malformed.")
        normalizer = profile.normalizers.get(key)
        prepared[key] = normalizer(value) if normalizer else value.strip()
    missing = [
        key
        for key in profile.required_configuration
        if key not in prepared and key not in secret_keys
    ]
    if missing:
        example = {"infusionsoft.server": "dt123.infusionsoft.com"}
        hint = ", ".join(f"{key!r}: {example.get(key, '...')!r}" for key in missing)
        raise ConfigurationError(
            f"The {profile.name} connector needs configuration {', '.join(missing)}: pass "
            f"configuration={{{hint}}}."
        )
    return prepared


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
