"""The whole local stack: Prefect server (SQLite or PostgreSQL), sandbox, callback receiver,
served deployments or workers, blocks."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks import OAuthAppCredentials, OpenConnectorsCredentials
from flows.steps.names import AUTHENTICATE_FLOW, DEPLOYMENTS
from flows.steps.parameters import DEFAULT_CREDENTIALS_BLOCK, DEFAULT_OAUTH_APP_BLOCK
from tooling.devstack.postgresql import PostgreSQLCluster, start_postgresql
from tooling.devstack.prefect_server import PrefectServer, prefect_environment, start_prefect_server
from tooling.devstack.processes import ManagedProcess, StackError
from tooling.devstack.receiver_process import ReceiverProcess, start_receiver
from tooling.devstack.sandbox_process import SandboxProcess, random_sandbox_config, start_sandbox
from tooling.devstack.serving import start_serving
from tooling.devstack.workers import WORK_POOL, start_worker
from tooling.sandbox.config import SandboxConfig

FLOW_NAME = AUTHENTICATE_FLOW
SERVED_DEPLOYMENTS = list(DEPLOYMENTS)
ENCRYPTED_KEY_BLOCK = "infusionsoft-encrypted-key"
Database = Literal["sqlite", "postgresql"]
# The switch for the demo and the benchmarks: `OC_STACK_DATABASE=postgresql`.
DATABASE_VARIABLE = "OC_STACK_DATABASE"


def stack_database(database: str | None = None) -> Database:
    """The database the stack uses: `database`, else `$OC_STACK_DATABASE`, else SQLite.

    Raises:
        StackError: Neither `sqlite` nor `postgresql`.
    """
    chosen = (database or os.environ.get(DATABASE_VARIABLE) or "sqlite").strip().lower()
    if chosen not in ("sqlite", "postgresql"):
        raise StackError(f"{DATABASE_VARIABLE} must be sqlite or postgresql, not {chosen!r}.")
    return chosen  # type: ignore[return-value]


@dataclass
class LocalStack:
    """The running stack.

    Attributes:
        home: The stack's directory (Prefect home, logs, sandbox configuration).
        prefect: The Prefect server.
        sandbox: The sandbox.
        env: The environment for further processes that talk to this server.
        scratch: Their temporary directory (`TMPDIR`), deleted with the stack.
        receiver: The callback receiver, when started.
        serving: The serving processes started so far.
        workers: The `prefect worker` processes started so far.
        postgresql: The PostgreSQL cluster under the Prefect server; None on SQLite.
        dump_database_to: Where `stop` writes the PostgreSQL database's rows before the
            cluster is deleted (for audits); None: no dump.
    """

    home: Path
    prefect: PrefectServer
    sandbox: SandboxProcess
    env: dict[str, str]
    scratch: Path
    receiver: ReceiverProcess | None = None
    serving: list[ManagedProcess] = field(default_factory=list)
    workers: list[ManagedProcess] = field(default_factory=list)
    postgresql: PostgreSQLCluster | None = None
    encrypted_key_value: str | None = field(default=None, repr=False)
    dump_database_to: Path | None = None

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

    def start_worker(
        self, name: str, *, pool: str = WORK_POOL, environment: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        """Start a `prefect worker` on `pool` (the name must be new on this server).

        `environment` is added to the stack's for this worker and its runs' processes.
        """
        env = {**self.env, **(environment or {})}
        process = start_worker(env, self.home, self.prefect.api_url, pool=pool, name=name)
        self.workers.append(process)
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
        old = self.prefect
        old.stop()
        self.prefect = start_prefect_server(
            self.home,
            port=int(old.url.rsplit(":", 1)[1]),
            database_url=old.database_url,
            quick_pause_expiry=old.quick_pause_expiry,
        )
        return self.prefect

    def stop(self) -> None:
        """Stop every process, the last started first; delete the PostgreSQL cluster.

        With `dump_database_to`, the PostgreSQL database is dumped once the Prefect server
        has stopped (so the dump holds all that any process wrote), then the cluster goes.

        Raises:
            StackError: The dump failed (everything is stopped all the same).
        """
        for process in reversed([*self.serving, *self.workers]):
            process.stop()
        if self.receiver is not None:
            self.receiver.stop()
        self.sandbox.stop()
        self.prefect.stop()
        if self.postgresql is not None:
            try:
                if self.dump_database_to is not None:
                    self.postgresql.dump(self.dump_database_to)
            finally:
                self.postgresql.stop()


@contextlib.contextmanager
def local_stack(
    home: Path,
    *,
    serve: bool = True,
    receiver: bool = True,
    sandbox_config: SandboxConfig | None = None,
    lifetime: float = 3600,
    environment: Mapping[str, str] | None = None,
    database: Database | None = None,
    quick_pause_expiry: bool = True,
) -> Iterator[LocalStack]:
    """Start the stack, point this process's Prefect client at it, and stop it on exit.

    Args:
        home: The stack's directory.
        serve: Whether to start a process serving the deployments.
        receiver: Whether to start the callback receiver (the OAuth app's callback URL).
        sandbox_config: The sandbox's secrets and settings; random secrets by default.
        environment: Variables added to every process of the stack but the Prefect
            server (e.g. `OC_HOT_WAIT_SECONDS` for the serving processes).
        lifetime: Seconds after which the sandbox, receiver and PostgreSQL stop by themselves.
        database: `sqlite` (in `home`) or `postgresql` (a throwaway cluster); by default
            `$OC_STACK_DATABASE`, else SQLite.
        quick_pause_expiry: Expire pauses within a second (`start_prefect_server`).
    """
    home.mkdir(parents=True, exist_ok=True)
    postgresql = None
    if stack_database(database) == "postgresql":
        postgresql = start_postgresql(home / "logs", lifetime=lifetime)
    try:
        prefect = start_prefect_server(
            home,
            database_url=postgresql.connection_url if postgresql else None,
            quick_pause_expiry=quick_pause_expiry,
        )
    except BaseException:
        if postgresql is not None:
            postgresql.stop()
        raise
    stack: LocalStack | None = None
    # The temporary files of the stack's processes (a process worker's directory per run,
    # the fork server's socket), also those a process killed on purpose leaves behind, go
    # with the stack. A short path: a Unix socket's path has at most 107 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="oc-stack-"))
    try:
        env = {
            **prefect_environment(home, prefect.api_url),
            "TMPDIR": str(scratch),
            **(environment or {}),
        }
        sandbox = start_sandbox(
            sandbox_config or random_sandbox_config(), home, env=env, lifetime=lifetime
        )
        stack = LocalStack(
            home=home,
            prefect=prefect,
            sandbox=sandbox,
            env=env,
            scratch=scratch,
            postgresql=postgresql,
        )
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
        try:
            if stack is not None:
                stack.stop()
            else:
                prefect.stop()
                if postgresql is not None:
                    postgresql.stop()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
