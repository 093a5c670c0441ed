"""TLS contexts that many HTTP clients, connections and threads can share.

Building a verifying context loads the whole CA bundle (20 to 25 ms of CPU), so
clients that live briefly share one. But httpcore sets the ALPN list on its client's
context before every TLS connection (`set_alpn_protocols`), and that call replaces a
buffer which OpenSSL may be copying at that moment for a connection of another
thread (CPython releases the GIL around `SSL_new`). So a shared context gets its ALPN
list once, HTTP/1.1 only (what every client sharing one speaks; an HTTP/2 client
offered it falls back to HTTP/1.1), and later calls leave it as it is.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

ALPN = ["http/1.1"]


class _SharedContext(ssl.SSLContext):
    """An `SSLContext` whose ALPN list stays as set when it was made shareable."""

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        """Leave the list as it is (HTTP/1.1): changing it could race other connections."""


def shareable(context: ssl.SSLContext) -> ssl.SSLContext:
    """The same context, its ALPN list set once to HTTP/1.1 and kept (see the module)."""
    context.set_alpn_protocols(ALPN)
    context.__class__ = _SharedContext
    return context
