"""The README's first command, `scripts/demo --approve` (and `--deny`), run as a newcomer would.

Each run starts its own Prefect server, sandbox, callback receiver and serving
process, so this test does not use the session's stack; it checks the demo's
story, its exit code and that every service it started is gone afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT = 300
# The demo must set up everything itself: nothing of the test session's Prefect settings.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "UV_CACHE_DIR", "SSL_CERT_FILE")


def run_demo(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`scripts/demo <args>` in a clean environment, bounded in time."""
    env = {name: os.environ[name] for name in KEPT_ENV if name in os.environ}
    # `uv run` names its own binary in UV: put it first, so that the script finds this uv
    # (not a `python3 -m uv` of the project's environment, which has none).
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv:
        env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(ROOT / "scripts" / "demo"), *args, "--home", str(home)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )


def services_of(output: str) -> dict[str, str]:
    """The addresses the demo printed for the services it started."""
    found = dict(re.findall(r"^(Prefect UI|Sandbox|Callback):\s+(\S+)$", output, re.M))
    assert set(found) == {"Prefect UI", "Sandbox", "Callback"}, output
    return found


def assert_all_stopped(services: dict[str, str]) -> None:
    """None of the demo's services answers any more."""
    still = []
    for name, url in services.items():
        try:
            httpx.get(url, timeout=5)
        except httpx.ConnectError:
            continue
        still.append(name)
    assert not still, f"still answering after the demo ended: {still}"


def test_demo_approve_ends_with_a_saved_instance_and_stops_everything(tmp_path: Path) -> None:
    result = run_demo("--approve", home=tmp_path / "approve")
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "Consent link (send it to the account owner):" in output
    assert "answered: 200 Authorization received" in output
    completed = re.search(r"Completed: instance (\d+) \('Demo ERP'\) is saved in", output)
    assert completed, output
    assert "the block 'demo-erp' and answers its ping" in output
    assert "ConnectorInstance.load('demo-erp')" in output
    assert "Stopped every process the demo started." in output
    assert_all_stopped(services_of(output))


def test_demo_deny_ends_with_the_refusal_and_no_instance(tmp_path: Path) -> None:
    result = run_demo("--deny", home=tmp_path / "deny")
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "Pressed Deny at the consent page" in output
    assert "The run ended Failed" in output and "access_denied" in output
    assert "Completed: instance" not in output
    assert_all_stopped(services_of(output))
