"""The sandbox as a real process: ready line, health, and each way it stops."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

READY_TIMEOUT = 20


def start(*extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tooling.sandbox", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def read_ready(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
    assert readable, "the sandbox did not announce readiness in time"
    line = process.stdout.readline()
    ready: dict[str, Any] = json.loads(line)
    return ready


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def test_process_ready_health_and_sigterm() -> None:
    process = start("--max-lifetime", "60", "--parent-pid", str(os.getpid()))
    try:
        ready = read_ready(process)
        assert ready["event"] == "ready"
        assert ready["url"].startswith("http://127.0.0.1:")
        assert ready["api_base_url"] == ready["url"] + "/elements/api-v2"
        response = httpx.get(f"{ready['url']}/_sandbox/health", timeout=5)
        assert response.json() == {"status": "ok"}
        process.terminate()
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        assert process.stdout.read() == b""  # exactly one line on stdout
    finally:
        stop(process)


def test_process_stops_when_parent_is_gone() -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process = start("--parent-pid", str(parent.pid))
    try:
        read_ready(process)
        parent.kill()
        parent.wait(timeout=10)
        assert process.wait(timeout=10) == 0
    finally:
        stop(parent)
        stop(process)


def test_process_stops_after_lifetime() -> None:
    process = start("--max-lifetime", "0.5")
    try:
        read_ready(process)
        started = time.monotonic()
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        stop(process)


def test_process_refuses_remote_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tooling.sandbox", "--host", "0.0.0.0"],  # noqa: S104 - refused
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"--allow-remote" in result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_hosts(host: str) -> None:
    from callback_receiver.serving import is_loopback

    assert is_loopback(host)
    assert not is_loopback("192.168.1.10")
    assert not is_loopback("example.com")
