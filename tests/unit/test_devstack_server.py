"""The local Prefect server's settings: tests expire pauses quickly, benchmarks run Prefect's."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tooling.benchmarks import harness
from tooling.devstack import prefect_server
from tooling.devstack.stack import LocalStack

LOOP = "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The environments the server was started with (no process is started)."""
    environments: list[dict[str, str]] = []

    def start_process(name: str, argv: list[str], *, env: dict[str, str], **_: Any) -> Any:
        environments.append(env)
        return _FakeProcess()

    monkeypatch.setattr(prefect_server, "start_process", start_process)
    monkeypatch.setattr(prefect_server, "wait_until", lambda *args, **kwargs: None)
    return environments


class _FakeProcess:
    def stop(self) -> None:
        pass


def test_a_test_server_expires_pauses_within_a_second(
    tmp_path: Path, started: list[dict[str, str]]
) -> None:
    prefect_server.start_prefect_server(tmp_path, port=4999)
    assert started[0][LOOP] == "1"
    # Only the server needs it: the other processes' environment does not carry it.
    assert LOOP not in prefect_server.prefect_environment(tmp_path, "http://127.0.0.1:4999/api")


def test_without_quick_expiry_the_server_runs_prefects_default_and_keeps_it_on_restart(
    tmp_path: Path, started: list[dict[str, str]]
) -> None:
    server = prefect_server.start_prefect_server(tmp_path, port=4999, quick_pause_expiry=False)
    assert LOOP not in started[0]
    stack = LocalStack(home=tmp_path, prefect=server, sandbox=None, env={}, scratch=tmp_path)  # type: ignore[arg-type]
    stack.restart_prefect_server()
    assert LOOP not in started[1]
    assert stack.prefect.url == server.url


def test_benchmark_stacks_measure_with_prefects_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the stack's directory
    seen: dict[str, Any] = {}

    @contextlib.contextmanager
    def local_stack(home: Path, **kwargs: Any) -> Iterator[None]:
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(harness, "local_stack", local_stack)
    with pytest.raises(_Stop), harness.bench_stack("settings", ours=False, minimal=False):
        pass
    assert seen["quick_pause_expiry"] is False


class _Stop(Exception):
    pass
