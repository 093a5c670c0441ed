"""Prefect's API clients in a serving process share one TLS context per CA bundle.

Prefect's `PrefectClient` and `SyncPrefectClient` build a new `ssl.SSLContext` for
every client, loading the whole CA bundle each time (20 to 25 ms of CPU), and a flow
run makes about a dozen clients (its engine, result store, log and event workers,
the pause observer, the run's own steps): a third of the CPU a hot authorization
spent in its process. Prefect's server-version check (once per process, before its
first event subscription) builds one more. Prefect takes a ready context
(`httpx_settings={"verify": context}`), but its own callers pass none, so
`share_tls_contexts()` makes the *verified* contexts these build one object per CA
bundle instead.

Sharing is safe: Prefect never changes a verified context once built, httpx only
reads it, and the ALPN list httpcore sets before each TLS connection is fixed once
to HTTP/1.1 (`open_connectors.tls.shareable`: changing it could race a connection
of another thread). The context Prefect builds for
`PREFECT_API_TLS_INSECURE_SKIP_VERIFY`, which it changes afterwards, is built anew
each time as before. A CA bundle replaced on disk is read by the next
process (as by any client that lives long). Only the calls of the modules in
`SHARING_MODULES` change; a module that no longer builds its contexts through its own
`ssl` import is left alone.

The serving process calls it, and the fork server as it starts
(`deployments.fork_server_warmup`), so every forked flow run shares too. While
`PREFECT_API_ENABLE_HTTP2` is on (in the serving process) nothing is shared, so
Prefect's clients keep offering HTTP/2.
"""

from __future__ import annotations

import functools
import ssl
from types import ModuleType
from typing import Any

import certifi
import prefect._internal.version_checking
import prefect.client.orchestration
from prefect.settings import PREFECT_API_ENABLE_HTTP2, PREFECT_API_SSL_CERT_FILE

from open_connectors.tls import shareable


class _SslSharingVerifiedContexts:
    """The `ssl` module as Prefect's client module sees it: verified contexts are shared."""

    def __init__(self, module: ModuleType) -> None:
        self._ssl = module

    def create_default_context(
        self,
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: str | bytes | None = None,
    ) -> ssl.SSLContext:
        """The shared context for a CA bundle; a new one when none is named (it gets changed)."""
        if cafile is None and capath is None and cadata is None:
            return self._ssl.create_default_context(purpose)
        return _verified_context(purpose, cafile, capath, cadata)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ssl, name)


# Prefect's modules that build the verified contexts of its HTTP/1.1 API clients.
SHARING_MODULES: tuple[ModuleType, ...] = (
    prefect.client.orchestration,
    prefect._internal.version_checking,
)


@functools.lru_cache(maxsize=8)
def _verified_context(
    purpose: ssl.Purpose, cafile: str | None, capath: str | None, cadata: str | bytes | None
) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
    return shareable(context)


def share_tls_contexts() -> bool:
    """Make this process's Prefect API clients share their verified TLS contexts.

    Returns whether it is in effect for Prefect's API clients (False when their module
    no longer builds its contexts through its own `ssl` import, or HTTP/2 is on).
    Calling it again changes nothing.
    """
    if PREFECT_API_ENABLE_HTTP2.value():
        return False
    sharing = _SslSharingVerifiedContexts(ssl)
    for module in SHARING_MODULES:
        if getattr(module, "ssl", None) is ssl:
            module.ssl = sharing  # type: ignore[attr-defined]
    clients = getattr(prefect.client.orchestration, "ssl", None)
    return isinstance(clients, _SslSharingVerifiedContexts)


def build_shared_context() -> None:
    """Build the context Prefect's clients will ask for now (the fork server, before forking)."""
    cafile = PREFECT_API_SSL_CERT_FILE.value() or certifi.where()
    _verified_context(ssl.Purpose.SERVER_AUTH, cafile, None, None)
