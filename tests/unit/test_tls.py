"""A shared TLS context gets its ALPN list once; httpcore's later calls keep it."""

from __future__ import annotations

import ssl

import pytest

from open_connectors.tls import ALPN, shareable


def test_the_alpn_list_is_set_once_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(
        ssl.SSLContext, "set_alpn_protocols", lambda self, protocols: calls.append(protocols)
    )
    context = ssl.create_default_context()
    shared = shareable(context)
    assert shared is context and calls == [ALPN] == [["http/1.1"]]
    shared.set_alpn_protocols(["h2", "http/1.1"])  # what httpcore does before each connection
    assert calls == [ALPN]


def test_it_is_still_the_verifying_context_it_was() -> None:
    shared = shareable(ssl.create_default_context())
    assert isinstance(shared, ssl.SSLContext)
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
