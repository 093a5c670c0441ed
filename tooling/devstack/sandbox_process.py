"""The sandbox as a separate process on a free loopback port."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from tooling.devstack.processes import ManagedProcess, read_ready_line, start_process
from tooling.sandbox.config import OAuthApp, SandboxConfig

SANDBOX_START_TIMEOUT = 30.0


@dataclass
class SandboxProcess:
    """A running sandbox.

    Attributes:
        url: Its root, e.g. `http://127.0.0.1:8123`.
        api_base_url: The platform API base (`<url>/elements/api-v2`).
        config: The secrets and settings it was started with.
        process: The process.
    """

    url: str
    api_base_url: str
    config: SandboxConfig
    process: ManagedProcess

    @property
    def landing_url(self) -> str:
        """The stand-in of Open Connectors' own callback page."""
        return f"{self.url}/oauth/landing"

    def stop(self) -> None:
        """Stop the sandbox."""
        self.process.stop()


def random_sandbox_config(**overrides: object) -> SandboxConfig:
    """A sandbox configuration with fresh random secrets (so leaks can be searched for)."""
    values: dict[str, object] = {
        "user_secret": f"user-{secrets.token_urlsafe(18)}",
        "organization_secret": f"org-{secrets.token_urlsafe(18)}",
        "oauth_apps": [
            OAuthApp(
                client_id=f"client-{secrets.token_hex(6)}",
                client_secret=f"client-secret-{secrets.token_urlsafe(18)}",
                name="Prefect Open Connectors demo",
            )
        ],
    }
    values.update(overrides)
    return SandboxConfig.model_validate(values)


def start_sandbox(
    config: SandboxConfig,
    work_dir: Path,
    *,
    env: dict[str, str] | None = None,
    lifetime: float = 3600,
) -> SandboxProcess:
    """Start `python -m tooling.sandbox` and wait for its ready line.

    Raises:
        StackError: The sandbox did not report ready in time.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "sandbox-config.json"
    config_path.write_text(config.model_dump_json())
    config_path.chmod(0o600)
    process = start_process(
        "sandbox",
        [
            sys.executable,
            "-m",
            "tooling.sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--config",
            str(config_path),
            "--max-lifetime",
            str(int(lifetime)),
            "--parent-pid",
            str(os.getpid()),
        ],
        env=env or dict(os.environ),
        log_path=work_dir / "logs" / "sandbox.log",
        pipe_stdout=True,
    )
    try:
        ready = read_ready_line(process, timeout=SANDBOX_START_TIMEOUT)
    except BaseException:
        process.stop()
        raise
    return SandboxProcess(
        url=ready["url"], api_base_url=ready["api_base_url"], config=config, process=process
    )
