"""A local Prefect server: `prefect server start` on loopback, on SQLite or PostgreSQL."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from callback_receiver.links import RunLinks
from tooling.devstack.processes import ManagedProcess, free_port, start_process, wait_until

SERVER_START_TIMEOUT = 120.0


@dataclass
class PrefectServer:
    """A running local Prefect server.

    Attributes:
        url: The UI address, e.g. `http://127.0.0.1:4200`.
        api_url: The API address (`<url>/api`).
        home: Its `PREFECT_HOME` (SQLite database, results storage, logs).
        process: The server process.
        database_url: Its `PREFECT_API_DATABASE_CONNECTION_URL`; None for SQLite in `home`.
        quick_pause_expiry: Whether its pause-expiration service looks every second
            (`start_prefect_server`).
    """

    url: str
    api_url: str
    home: Path
    process: ManagedProcess
    database_url: str | None = field(default=None, repr=False)
    quick_pause_expiry: bool = True

    def flow_run_url(self, flow_run_id: object) -> str:
        """The UI page of a flow run (Prefect's own `url_for`, as the receiver builds it)."""
        url = RunLinks(ui_url=self.url).flow_run(str(flow_run_id))
        assert url is not None  # the UI address is given
        return url

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


def prefect_environment(home: Path, api_url: str) -> dict[str, str]:
    """The environment of every process of the stack that talks to the server.

    The caller's own Prefect settings (a profile pointing at Prefect Cloud, say) are
    left out, so the stack never touches anything but its own server.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_PROFILES_PATH": str(home / "profiles.toml"),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # The served runner looks for resumed runs every second instead of every 10.
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def encryption_key(home: Path) -> str:
    """The server's block encryption key, kept apart from the database (made once per home)."""
    path = home / "server-encryption.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_bytes(Fernet.generate_key())
        path.chmod(0o600)
    return path.read_text().strip()


def start_prefect_server(
    home: Path,
    *,
    port: int | None = None,
    database_url: str | None = None,
    quick_pause_expiry: bool = True,
) -> PrefectServer:
    """Start `prefect server start` on 127.0.0.1 and wait until its API answers.

    Args:
        home: Its `PREFECT_HOME`.
        port: Its port; a free one by default.
        database_url: A SQLAlchemy database address (PostgreSQL); SQLite in `home` by default.
        quick_pause_expiry: Let the pause-expiration service look every second instead of
            Prefect's 5 s, so that tests' short waits expire promptly. Benchmarks turn it
            off: that service reads every paused run at each look, and their figures are
            meant for Prefect's defaults.

    Raises:
        StackError: The server did not become healthy in time.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = prefect_environment(home, f"{url}/api")
    env["PREFECT_SERVER_ENCRYPTION_KEY"] = encryption_key(home)
    env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
    env["PREFECT_SERVER_API_PORT"] = str(port)
    if quick_pause_expiry:
        env["PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS"] = "1"
    if database_url is not None:
        # Only the server gets the address (it holds the database password).
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    process = start_process(
        "prefect server",
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        log_path=home / "logs" / "prefect-server.log",
    )
    server = PrefectServer(
        url=url,
        api_url=f"{url}/api",
        home=home,
        process=process,
        database_url=database_url,
        quick_pause_expiry=quick_pause_expiry,
    )
    try:
        wait_until(
            lambda: _healthy(server.api_url),
            timeout=SERVER_START_TIMEOUT,
            what=f"the Prefect server at {url}",
            process=process,
        )
    except BaseException:
        process.stop()
        raise
    return server


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
