"""Shared fixtures of the task tests: a Prefect test server, an in-process sandbox, blocks.

Only tests that ask for `prefect_harness` (the `tests/unit/test_tasks_*.py` modules, and
a few tests elsewhere that need Prefect's own server) start the Prefect test server;
every other unit test stays as fast as before.

Everything the task tests build or read (the blocks, the answers, the consent
decision, the sandbox journal, the events, the log lines) comes from here, so a
change of the product's contract is adapted in one place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import anyio
import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.flow_runs import aresume_flow_run
from prefect.input.actions import aread_flow_run_input
from pydantic import SecretStr

from blocks import OAuthAppCredentials, OpenConnectorsCredentials
from flows.steps.blocks import AuthorizationBlocks
from flows.steps.parameters import AuthorizationParameters
from open_connectors import AuthorizationGrant, OpenConnectorsClient, RetryPolicy
from tooling.devstack.consent import decide
from tooling.sandbox import SandboxConfig, create_app
from tooling.sandbox import testing as sandbox_testing
from tooling.sandbox.faults import FaultRuleSpec
from tooling.sandbox.state import SandboxState
from tooling.sandbox.testing import API, BASE_URL, DEFAULT_CALLBACK_URL, DEFAULT_SERVER

T = TypeVar("T")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database for the whole session, started on first use.

    The generous start-up timeout is for a loaded machine (the server migrates a new
    database); it starts in seconds otherwise.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(autouse=True)
def _no_burst_of_busy_refusals_yet() -> Iterator[None]:
    """Each test starts with no busy refusal counted towards a burst (`blocks.prefect_client`)."""
    from blocks import prefect_client

    prefect_client._recent.clear()
    yield
    prefect_client._recent.clear()


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class Sandbox:
    """The in-process sandbox every `OpenConnectorsCredentials` client talks to in a test.

    Attributes:
        config: The sandbox's configuration (its secrets and OAuth app).
        state: The sandbox's in-memory state (instances, journal, faults).
        http: A client of the sandbox app, for the consent page.
    """

    config: SandboxConfig
    state: SandboxState
    http: httpx.AsyncClient

    def requests(self, method: str, path_suffix: str) -> list[dict[str, Any]]:
        """The journal entries of `method` requests whose path ends with `path_suffix`."""
        return [
            entry
            for entry in self.state.journal.entries()
            if entry["method"] == method and entry["path"].endswith(path_suffix)
        ]

    def instances(self, tag: str | None = None) -> list[Any]:
        """The platform's live instances, those carrying `tag` only when given."""
        everything = [item for item in self.state.store.everything() if not item.deleted]
        return [item for item in everything if tag is None or tag in item.tags]

    def fail(self, method: str, path: str, *actions: dict[str, Any]) -> None:
        """Give the next `method` requests to `path` (a prefix when it ends with `*`) `actions`."""
        self.state.faults.add(
            FaultRuleSpec.model_validate({"method": method, "path": path, "actions": actions})
        )

    async def decide(self, consent_url: str, decision: str = "approve") -> str:
        """Open the consent page, click `decision`, and return the redirect address."""
        return await decide(consent_url, decision, client=self.http)  # type: ignore[arg-type]

    async def code_for(self, consent_url: str) -> str:
        """Approve the consent page and return the authorization code."""
        return redirect_query(await self.decide(consent_url))["code"]

    async def new_code(self) -> str:
        """A fresh authorization code of the sandbox's OAuth app (consent walked through)."""
        return await sandbox_testing.authorize(self.http, self.config)

    async def create(self, *, tags: list[str], name: str = "Acme ERP") -> dict[str, Any]:
        """Authorize and create an instance directly on the platform; its JSON, with token."""
        return await sandbox_testing.create_instance(self.http, self.config, tags=tags, name=name)

    def delete(self, instance_id: int) -> None:
        """Delete an instance, as someone would in the Open Connectors UI."""
        self.state.store.delete(self.state.store.get(instance_id))  # type: ignore[arg-type]

    def token_of(self, instance_id: int) -> str:
        """The instance's current token."""
        instance = self.state.store.get(instance_id)
        assert instance is not None
        return instance.token

    def forget_requests(self) -> None:
        """Empty the journal (after a test's own set-up calls)."""
        self.state.journal.clear()


def redirect_query(url: str) -> dict[str, str]:
    """The query parameters of a redirect address (first values)."""
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
async def sandbox(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sandbox]:
    """A fresh sandbox; every platform client of the test is routed to it (no network, no wait)."""
    config = SandboxConfig()
    app = create_app(config)

    def get_client(
        self: OpenConnectorsCredentials, element_token: SecretStr | None = None
    ) -> OpenConnectorsClient:
        return OpenConnectorsClient(
            self.base_url,
            self.user_secret,
            self.organization_secret,
            element_token=element_token,
            timeout=self.timeout_seconds,
            retry_policy=RetryPolicy(max_attempts=self.max_attempts),
            transport=httpx.ASGITransport(app=app),
            sleep=_no_sleep,
        )

    monkeypatch.setattr(OpenConnectorsCredentials, "get_client", get_client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        yield Sandbox(config=config, state=app.state.sandbox, http=http)


def make_blocks(config: SandboxConfig, **oauth_app: Any) -> AuthorizationBlocks:
    """The blocks of an authorization against the sandbox (nothing saved in Prefect).

    Args:
        config: The sandbox configuration whose secrets and first OAuth app to use.
        oauth_app: Fields of the OAuth app block to override.
    """
    app = config.oauth_apps[0]
    fields: dict[str, Any] = {
        "api_key": app.client_id,
        "api_secret": app.client_secret,
        "callback_url": DEFAULT_CALLBACK_URL,
        **oauth_app,
    }
    return AuthorizationBlocks(
        credentials=OpenConnectorsCredentials(
            base_url=f"{BASE_URL}{API}",
            user_secret=config.user_secret,
            organization_secret=config.organization_secret,
        ),
        oauth_app=OAuthAppCredentials(**fields),
        secret_configuration={},
    )


@pytest.fixture
def blocks(sandbox: Sandbox) -> AuthorizationBlocks:
    """The authorization blocks for the test's sandbox."""
    return make_blocks(sandbox.config)


SERVER_CONFIGURATION = {"infusionsoft.server": DEFAULT_SERVER}


def unique_block(prefix: str = "acme-erp") -> str:
    """A block name no other test of the session uses (they share one Prefect database)."""
    return f"{prefix}-{uuid4().hex[:12]}"


def make_parameters(instance_block: str, **overrides: Any) -> AuthorizationParameters:
    """The checked parameters of an authorization of "Acme ERP" saved in `instance_block`."""
    given: dict[str, Any] = {
        "instance_name": "Acme ERP",
        "element_key": "infusionsofterp",
        "configuration": SERVER_CONFIGURATION,
        "secret_configuration": None,
        "tags": ["team-a"],
        "credentials_block": "unused-credentials",
        "oauth_app_block": "unused-oauth-app",
        "instance_block": instance_block,
        "timeout_minutes": 5,
        **overrides,
    }
    return AuthorizationParameters.build(**given)


def grant_of(code: str) -> AuthorizationGrant:
    """An accepted answer carrying `code` (as `await_authorization` returns it)."""
    return AuthorizationGrant(code=SecretStr(code), state_checked=True)


def answer(**fields: str) -> dict[str, str]:
    """A run input for the authorization form (`code`, `state`, `error`, `error_description`)."""
    return dict(fields)


@dataclass
class Events:
    """The events the product emitted during a test, as `(event, resource, payload)`."""

    emitted: list[dict[str, Any]] = field(default_factory=list)

    def named(self, event: str) -> list[dict[str, Any]]:
        """The emitted events called `event`."""
        return [item for item in self.emitted if item["event"] == event]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    """Record the events `flows.steps.events` emits (instead of sending them)."""
    recorded = Events()

    def record(**kwargs: Any) -> None:
        recorded.emitted.append(kwargs)

    monkeypatch.setattr("flows.steps.events.emit_event", record)
    return recorded


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def run_logs() -> Iterator[list[str]]:
    """The messages of every flow and task run log line of the test, formatted."""
    handler = _Lines()
    loggers = [logging.getLogger("prefect.flow_runs"), logging.getLogger("prefect.task_runs")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


PAUSE_POLL_SECONDS = 0.2


@pytest.fixture
def fast_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """Direct runs look for the resume every 0.2 s instead of every 2 s."""
    monkeypatch.setattr("flows.steps.waiting.DIRECT_RUN_POLL_SECONDS", PAUSE_POLL_SECONDS)


async def find_run_id(flow_run_name: str, *, timeout: float = 30) -> UUID:
    """The id of the flow run called `flow_run_name`, once it exists."""
    async with get_client() as client:
        with anyio.fail_after(timeout):
            while True:
                runs = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name]))
                )
                if runs:
                    return runs[0].id
                await asyncio.sleep(PAUSE_POLL_SECONDS)


async def wait_for_pause(flow_run_id: UUID, pause_key: str, *, timeout: float = 30) -> None:
    """Wait until the run is paused under `pause_key` with its form saved."""
    async with get_client() as client:
        with anyio.fail_after(timeout):
            while True:
                run = await client.read_flow_run(flow_run_id)
                state = run.state
                if (
                    state is not None
                    and state.is_paused()
                    and state.state_details.pause_key == pause_key
                    and await aread_flow_run_input(
                        key=f"paused-{pause_key}-schema", flow_run_id=flow_run_id
                    )
                    is not None
                ):
                    return
                await asyncio.sleep(PAUSE_POLL_SECONDS / 2)


async def stored_answer(flow_run_id: UUID, pause_key: str) -> Any:
    """The answer Prefect still stores for `pause_key` (None once deleted)."""
    return await aread_flow_run_input(key=f"paused-{pause_key}-response", flow_run_id=flow_run_id)


async def run_answered(
    run: Coroutine[Any, Any, T], flow_run_name: str, answers: list[dict[str, str]]
) -> tuple[UUID, T]:
    """Run `run` (a flow call named `flow_run_name` that pauses) and answer each prompt in turn.

    The n-th answer goes to the pause `authorization-n`, as the product names them.

    Returns:
        The run's id and what the flow returned.

    Raises:
        Whatever the flow raised.
    """
    flow_task = asyncio.ensure_future(run)
    try:
        flow_run_id = await find_run_id(flow_run_name)
        for number, given in enumerate(answers, start=1):
            await wait_for_pause(flow_run_id, f"authorization-{number}")
            await aresume_flow_run(flow_run_id, run_input=given)
        with anyio.fail_after(30):
            return flow_run_id, await flow_task
    finally:
        if not flow_task.done():
            flow_task.cancel()
