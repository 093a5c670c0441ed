"""Imported by the fork server alone: what every forked run would build for itself, built once.

Each flow-run process forked from the fork server inherits its memory, so what is
built here before the first fork costs nothing per run: the TLS context that Prefect's
API clients share (`deployments.prefect_tls`, 20 to 25 ms of CPU to load the CA
bundle) and the one the platform client shares (`open_connectors.client`). Building a
TLS context opens no connection and starts no thread, so forking stays safe.

Imported anywhere else (a test, a tool), it does nothing.
"""

from __future__ import annotations

from deployments.fork_server_signals import imported_by_fork_server
from deployments.prefect_tls import build_shared_context, share_tls_contexts
from open_connectors.client import shared_tls_context

if imported_by_fork_server():
    if share_tls_contexts():
        build_shared_context()
    shared_tls_context()
