"""Keep secrets out of URLs that reach logs.

httpx logs every request URL at INFO level (logger `httpx`). The only request of
this client that can carry a secret in its query string is the GET fallback of the
OAuth URL call (`apiSecret`); OAuth redirects carry the authorization `code`. The
filter below masks such parameters in any record of the httpx loggers.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SENSITIVE_PARAMS = frozenset(
    {
        "apisecret",
        "api_secret",
        "client_secret",
        "code",
        "access_token",
        "refresh_token",
        "token",
        "password",
        "secret",
    }
)
_MASK = "***"
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """Return `url` with the values of sensitive query parameters masked."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    masked = [(key, _MASK if key.lower() in SENSITIVE_PARAMS else value) for key, value in pairs]
    return urlunsplit(parts._replace(query=urlencode(masked, safe="*")))


def redact_text(text: str) -> str:
    """Mask sensitive query parameters of every URL found in `text`."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks sensitive query parameters in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_httpx_log_redaction() -> None:
    """Attach the redacting filter to the httpx loggers once per process."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactingFilter) for existing in logger.filters):
            logger.addFilter(RedactingFilter())
