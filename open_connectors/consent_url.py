"""Checking the consent URL the platform hands out, before anyone is shown it.

The link is logged, published as an artifact and put above the resume form, so it
must hold no secret, even encoded, and it must carry this run's state (or the
answer could not be bound to the run). It is opened by a person: HTTPS, except on
this machine's loopback (the sandbox).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qs, unquote_plus, urlsplit

from pydantic import SecretStr

from open_connectors.errors import UnusableConsentUrlError
from open_connectors.regions import is_loopback_host

# Enough to undo an encoding applied twice or three times over.
_MAX_DECODINGS = 4
# RFC 3986's characters; anything else (spaces, quotes, <, >, controls) would also
# let the URL break out of the Markdown link it is shown in.
_URL_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")


def check_consent_url(url: str, *, state: str, secrets: Iterable[SecretStr]) -> str:
    """Return `url` when it is safe to show; refuse it otherwise.

    Args:
        url: The consent URL the platform returned.
        state: The state this run sent; the URL's `state` parameter must be exactly it.
        secrets: Values that must not appear in the URL, in any percent-encoding.

    Raises:
        UnusableConsentUrlError: The URL is not http(s), is plain http off loopback, carries
            credentials, holds a secret, or lacks this run's state.
    """
    if not _URL_CHARACTERS.match(url or ""):
        raise UnusableConsentUrlError(
            "The platform returned a consent URL with characters a URL cannot hold."
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise UnusableConsentUrlError("The platform returned a consent URL that is not http(s).")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise UnusableConsentUrlError(
            "The platform returned a plain http consent URL; the provider's consent page must "
            "use https. Check the connector's OAuth settings in Open Connectors."
        )
    if parts.username or parts.password:
        raise UnusableConsentUrlError("The platform returned a consent URL carrying credentials.")
    forms = _decodings(url)
    for secret in secrets:
        value = secret.get_secret_value()
        if value and any(value in form for form in forms):
            raise UnusableConsentUrlError(
                "The platform returned a consent URL that contains a secret (the OAuth app's "
                "secret); it was not shown. Check the platform's OAuth settings for this connector."
            )
    if parse_qs(parts.query, keep_blank_values=True).get("state") != [state]:
        raise UnusableConsentUrlError(
            "The platform returned a consent URL without this run's state, so the answer could "
            "not be bound to this run. Check that the connector passes the state parameter on."
        )
    return url


def _decodings(url: str) -> list[str]:
    """The URL and its successive percent-decodings, until they stop changing."""
    forms = [url]
    for _ in range(_MAX_DECODINGS):
        decoded = unquote_plus(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return forms
