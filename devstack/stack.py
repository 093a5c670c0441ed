"""The whole local stack: Prefect server, sandbox, callback receiver, served deployments, blocks."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks import OAuthAppCredentials, OpenConnectorsCredentials
from devstack.prefect_server import PrefectServer, prefect_environment, start_prefect_server
from devstack.processes import ManagedProcess
from devstack.receiver_process import ReceiverProcess, start_receiver
from devstack.sandbox_process import SandboxProcess, random_sandbox_config, start_sandbox
from devstack.serving import start_serving
from flows.request import DEFAULT_CREDENTIALS_BLOCK, DEFAULT_OAUTH_APP_BLOCK
from sandbox.config import SandboxConfig

FLOW_NAME = "authenticate-connector-instance"
SERVED_DEPLOYMENTS = [
    (FLOW_NAME, "authenticate-infusionsoft-erp"),
    ("reauthorize-connector-instance", "reauthorize-connector-instance"),
    ("verify-connector-instances", "verify-connector-instances"),
    ("export-connector-resource", "export-connector-resource"),
]
ENCRYPTED_KEY_BLOCK = "infusionsoft-encrypted-key"


@dataclass
class LocalStack:
    """The running stack.

    Attributes:
        home: The stack's directory (Prefect home, logs, sandbox configuration).
        prefect: The Prefect server.
        sandbox: The sandbox.
        env: The environment for further processes that talk to this server.
        receiver: The callback receiver, when started.
        serving: The serving processes started so far.
    """

    home: Path
    prefect: PrefectServer
    sandbox: SandboxProcess
    env: dict[str, str]
    receiver: ReceiverProcess | None = None
    serving: list[ManagedProcess] = field(default_factory=list)
    encrypted_key_value: str | None = field(default=None, repr=False)

    @property
    def callback_url(self) -> str:
        """Where the provider redirects: the receiver, or the sandbox's copy-this-address page."""
        return self.receiver.callback_url if self.receiver else self.sandbox.landing_url

    def start_serving(self, name: str = "serve") -> ManagedProcess:
        """Start (another) process serving the deployments."""
        process = start_serving(
            self.env, self.home, self.prefect.api_url, SERVED_DEPLOYMENTS, name=name
        )
        self.serving.append(process)
        return process

    async def save_sandbox_blocks(self, *, callback_url: str | None = None) -> None:
        """Save the credentials, OAuth app and Secret blocks that point at the sandbox.

        Args:
            callback_url: The OAuth app's callback URL; default `callback_url`.
        """
        config = self.sandbox.config
        app = config.oauth_apps[0]
        await OpenConnectorsCredentials(
            base_url=self.sandbox.api_base_url,
            user_secret=config.user_secret,
            organization_secret=config.organization_secret,
        ).asave(DEFAULT_CREDENTIALS_BLOCK, overwrite=True)
        await OAuthAppCredentials(
            api_key=app.client_id,
            api_secret=app.client_secret,
            callback_url=callback_url or self.callback_url,
        ).asave(DEFAULT_OAUTH_APP_BLOCK, overwrite=True)
        self.encrypted_key_value = f"encrypted-key-{secrets.token_urlsafe(12)}"
        await Secret(value=self.encrypted_key_value).asave(ENCRYPTED_KEY_BLOCK, overwrite=True)

    def restart_prefect_server(self) -> PrefectServer:
        """Stop the Prefect server and start it again on the same port, home and database."""
        port = int(self.prefect.url.rsplit(":", 1)[1])
        self.prefect.stop()
        self.prefect = start_prefect_server(self.home, port=port)
        return self.prefect

    def stop(self) -> None:
        """Stop every process of the stack, the last started first."""
        for process in reversed(self.serving):
            process.stop()
        if self.receiver is not None:
            self.receiver.stop()
        self.sandbox.stop()
        self.prefect.stop()


@contextlib.contextmanager
def local_stack(
    home: Path,
    *,
    serve: bool = True,
    receiver: bool = True,
    sandbox_config: SandboxConfig | None = None,
    lifetime: float = 3600,
) -> Iterator[LocalStack]:
    """Start the stack, point this process's Prefect client at it, and stop it on exit.

    Args:
        home: The stack's directory.
        serve: Whether to start a process serving the deployments.
        receiver: Whether to start the callback receiver (the OAuth app's callback URL).
        sandbox_config: The sandbox's secrets and settings; random secrets by default.
        lifetime: Seconds after which the sandbox and receiver stop by themselves.
    """
    home.mkdir(parents=True, exist_ok=True)
    prefect = start_prefect_server(home)
    stack: LocalStack | None = None
    try:
        env = prefect_environment(home, prefect.api_url)
        sandbox = start_sandbox(
            sandbox_config or random_sandbox_config(), home, env=env, lifetime=lifetime
        )
        stack = LocalStack(home=home, prefect=prefect, sandbox=sandbox, env=env)
        if receiver:
            stack.receiver = start_receiver(
                env,
                home,
                prefect_api_url=prefect.api_url,
                prefect_ui_url=prefect.url,
                lifetime=lifetime,
            )
        with temporary_settings(updates={PREFECT_API_URL: prefect.api_url}):
            if serve:
                stack.start_serving()
            yield stack
    finally:
        if stack is not None:
            stack.stop()
        else:
            prefect.stop()
