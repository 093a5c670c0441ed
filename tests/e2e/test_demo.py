"""The README's first command, `scripts/demo --approve` (and `--deny`), run as a newcomer would.

Each run starts its own Prefect server, sandbox, callback receiver and serving
process, so this test does not use the session's stack; it checks the demo's
story, its exit code and that every service it started is gone afterwards, also
when the demo is stopped by a signal while it waits for the account owner.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tooling.devstack.proctree import process_tree

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT = 300
# The demo must set up everything itself: nothing of the test session's Prefect settings.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "UV_CACHE_DIR", "SSL_CERT_FILE")


def demo_environment() -> dict[str, str]:
    """A clean environment for `scripts/demo`: nothing of the test session's Prefect settings."""
    env = {name: os.environ[name] for name in KEPT_ENV if name in os.environ}
    # `uv run` names its own binary in UV: put it first, so that the script finds this uv
    # (not a `python3 -m uv` of the project's environment, which has none).
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv:
        env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_demo(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`scripts/demo <args>` in a clean environment, bounded in time."""
    return subprocess.run(
        [str(ROOT / "scripts" / "demo"), *args, "--home", str(home)],
        cwd=ROOT,
        env=demo_environment(),
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


def wait_for_line(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> str:
    """The output written to `path` once it holds `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = path.read_text(errors="replace")
        if text in output:
            return output
        assert process.poll() is None, f"the demo exited {process.returncode}:\n{output}"
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} within {timeout:.0f} s:\n{path.read_text()}")


def still_running(pids: set[int]) -> list[int]:
    """Those of `pids` that are still running (a zombie, already dead, does not count)."""
    running = []
    for pid in process_tree(pids):
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                running.append(pid)
    return sorted(running)


def answering(services: dict[str, str]) -> list[str]:
    """The services that answer HTTP now."""
    found = []
    for name, url in services.items():
        try:
            httpx.get(url, timeout=5)
        except httpx.ConnectError:
            continue
        found.append(name)
    return found


# Starting the stack takes a minute on an idle machine, several on a busy one.
SIGNAL_TEST_TIMEOUT = 900


@pytest.mark.timeout(SIGNAL_TEST_TIMEOUT)
def test_sigterm_stops_the_waiting_demo_and_everything_it_started(tmp_path: Path) -> None:
    stdout, stderr = tmp_path / "demo.out", tmp_path / "demo.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        # No --approve: the demo waits for a person, as a CI job would when it times out.
        demo = subprocess.Popen(
            [
                str(ROOT / "scripts" / "demo"),
                "--wait-minutes",
                "5",
                "--home",
                str(tmp_path / "home"),
            ],
            cwd=ROOT,
            env=demo_environment(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    started: set[int] = set()
    try:
        output = wait_for_line(stdout, "Waiting up to", demo, timeout=SIGNAL_TEST_TIMEOUT - 200)
        services = services_of(output)
        assert answering(services) == list(services)
        # Every process the demo started (the script's pid is uv's, then the demo's Python).
        started = set(process_tree([demo.pid])) - {demo.pid}
        os.kill(demo.pid, signal.SIGTERM)
        code = demo.wait(timeout=120)
        # Looked at before the clean-up below can hide anything.
        left = still_running(started)
        still_answering = answering(services)
    finally:
        # Whatever the outcome, nothing the demo started outlives the test: what is still
        # running is stopped by its pid (each runs in its own session).
        leftovers = set(still_running(started))
        if demo.poll() is None:
            leftovers |= set(process_tree([demo.pid]))
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if demo.poll() is None:
            demo.wait(timeout=10)
    output = stdout.read_text(errors="replace")
    assert code == 128 + signal.SIGTERM, output + stderr.read_text(errors="replace")
    assert "Stopped.\nStopped every process the demo started." in output
    assert not still_answering, f"still answering after the demo ended: {still_answering}"
    assert not left, f"processes the demo started still running: {left}"
