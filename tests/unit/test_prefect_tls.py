"""Prefect's API clients in a serving process share their verified TLS contexts."""

from __future__ import annotations

import ssl
import subprocess
import sys

import certifi
import prefect._internal.version_checking
import prefect.client.orchestration
import pytest
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import (
    PREFECT_API_ENABLE_HTTP2,
    PREFECT_API_SSL_CERT_FILE,
    PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    temporary_settings,
)

from deployments.prefect_tls import SHARING_MODULES, share_tls_contexts

API = "https://prefect.example.test/api"


@pytest.fixture(autouse=True)
def prefect_ssl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's modules get their own `ssl` back after each test."""
    for module in SHARING_MODULES:
        monkeypatch.setattr(module, "ssl", ssl)


@pytest.fixture
def sharing() -> None:
    """Sharing on for this test only."""
    assert share_tls_contexts() is True


def _context(client: PrefectClient | SyncPrefectClient) -> ssl.SSLContext:
    """The TLS context the client's connections would use."""
    return client._client._transport._pool._ssl_context  # type: ignore[union-attr]


@pytest.mark.usefixtures("sharing")
def test_every_client_gets_the_same_verified_context() -> None:
    contexts = [_context(PrefectClient(API)) for _ in range(3)]
    contexts.append(_context(SyncPrefectClient(API)))
    assert all(context is contexts[0] for context in contexts)
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
    assert contexts[0].cert_store_stats()["x509_ca"] > 0  # the CA bundle is loaded


@pytest.mark.usefixtures("sharing")
def test_prefects_server_version_check_gets_the_same_context() -> None:
    # The hot wait's event subscription checks the server's version once per process.
    cafile = PREFECT_API_SSL_CERT_FILE.value() or certifi.where()  # as Prefect picks it
    check = prefect._internal.version_checking.ssl.create_default_context(cafile=cafile)
    assert check is _context(PrefectClient(API))


@pytest.mark.usefixtures("sharing")
def test_the_insecure_context_prefect_changes_is_never_shared() -> None:
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        first, second = _context(PrefectClient(API)), _context(PrefectClient(API))
    assert first is not second
    assert first.verify_mode == ssl.CERT_NONE
    # Prefect's change to the insecure ones never reaches the verified one.
    verified = _context(PrefectClient(API))
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname


def test_without_sharing_each_client_builds_its_own() -> None:
    # What it saves: Prefect builds (and loads the CA bundle into) one context per client.
    assert _context(PrefectClient(API)) is not _context(PrefectClient(API))


@pytest.mark.usefixtures("sharing")
def test_calling_it_again_changes_nothing() -> None:
    proxy = prefect.client.orchestration.ssl
    assert share_tls_contexts() is True
    assert prefect.client.orchestration.ssl is proxy
    assert proxy.CERT_REQUIRED == ssl.CERT_REQUIRED  # everything else is the ssl module


def test_a_prefect_that_builds_its_contexts_elsewhere_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(prefect.client.orchestration, "ssl")
    assert share_tls_contexts() is False
    assert not hasattr(prefect.client.orchestration, "ssl")


def test_nothing_is_shared_while_http2_is_on() -> None:
    # HTTP/2 clients set another ALPN list on the context than HTTP/1.1 ones would.
    with temporary_settings({PREFECT_API_ENABLE_HTTP2: True}):
        assert share_tls_contexts() is False
    assert prefect.client.orchestration.ssl is ssl


def exit_zero_if_warm() -> None:
    """Run in a forked process: exit 0 when it shares contexts built before the fork."""
    from deployments.prefect_tls import _SslSharingVerifiedContexts, _verified_context
    from open_connectors.client import _tls_context

    shared = isinstance(prefect.client.orchestration.ssl, _SslSharingVerifiedContexts)
    built = _verified_context.cache_info().currsize == 1
    platform_built = _tls_context.cache_info().currsize == 1
    raise SystemExit(0 if shared and built and platform_built else 3)


def test_forked_runs_share_contexts_the_fork_server_built() -> None:
    script = (
        "import multiprocessing, ssl\n"
        "import prefect.client.orchestration as orchestration\n"
        "from deployments.fork_server import PRELOAD, use_fork_server\n"
        "from tests.unit.test_prefect_tls import exit_zero_if_warm\n"
        "assert PRELOAD[-1] == 'deployments.fork_server_warmup'\n"
        "assert use_fork_server(preload=('deployments.fork_server_signals', "
        "'deployments.fork_server_warmup'))\n"
        "run = multiprocessing.get_context('forkserver').Process(target=exit_zero_if_warm)\n"
        "run.start()\n"
        "run.join(60)\n"
        "assert run.exitcode == 0, run.exitcode\n"
        "import deployments.fork_server_warmup\n"
        "assert orchestration.ssl is ssl  # imported outside the fork server: unchanged\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.usefixtures("sharing")
def test_a_shared_context_keeps_its_alpn_list_whatever_a_client_asks() -> None:
    # httpcore sets the list before every TLS connection; on a shared context that could
    # race another thread's connection, so it is set once (HTTP/1.1) and kept.
    context = _context(PrefectClient(API))
    context.set_alpn_protocols(["h2", "http/1.1"])  # what an HTTP/2 client would ask
    assert context is _context(PrefectClient(API))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
