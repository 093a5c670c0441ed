"""Where the platform API lives: SAP regions, Cloud Elements hosts, and base URL checks."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from open_connectors.errors import ConfigurationError

API_PATH = "/elements/api-v2"

#: Known API base URLs by short name (see docs/open-connectors-api.md §1).
REGIONS: dict[str, str] = {
    "sap-us2": "https://api.openconnectors.us2.ext.hana.ondemand.com/elements/api-v2",
    "sap-eu": "https://api.openconnectors.ext.hana.ondemand.com/elements/api-v2",
    # Cloud Foundry production hosts (open-connectors-api.md §12).
    "sap-eu10": "https://api.openconnectors.eu10.ext.hana.ondemand.com/elements/api-v2",
    "sap-us10": "https://api.openconnectors.us10.ext.hana.ondemand.com/elements/api-v2",
    "sap-trial-us10": "https://api.openconnectors.trial.us10.ext.hana.ondemand.com/elements/api-v2",
    "sap-trial-neo": "https://api.openconnectors.ext.hanatrial.ondemand.com/elements/api-v2",
    "cloud-elements": "https://api.cloud-elements.com/elements/api-v2",
    "cloud-elements-staging": "https://staging.cloud-elements.com/elements/api-v2",
}
DEFAULT_BASE_URL = REGIONS["sap-us2"]

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback_host(host: str | None) -> bool:
    """Whether `host` names this machine (plain HTTP is acceptable there)."""
    return (host or "").lower().strip("[]") in _LOOPBACK_HOSTS


def normalize_base_url(value: str) -> str:
    """Check and normalize an API base URL.

    A region name (`sap-us2`) is expanded; a bare host gets `/elements/api-v2`
    appended; the trailing slash is dropped. HTTPS is required except on loopback.

    Raises:
        ConfigurationError: The value is not a usable API base URL.
    """
    value = (value or "").strip()
    if value in REGIONS:
        return REGIONS[value]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url {value!r} is not an http(s) URL. Use your region's API, for example "
            f"{DEFAULT_BASE_URL!r}, or one of: {', '.join(sorted(REGIONS))}."
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"base_url must use https (plain http is only allowed on loopback): {value!r}."
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(
            "base_url must not carry a query, fragment or credentials; secrets belong in the "
            "credentials block's secret fields."
        )
    path = parts.path.rstrip("/") or API_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
