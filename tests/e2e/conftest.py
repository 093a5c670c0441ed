"""One real stack for the end-to-end tests: `prefect server start`, the sandbox, a serving process.

The stack is started once per session on loopback ports, in a temporary
directory, and stopped at the end (every process by its own id).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment

from devstack.consent import decide
from devstack.runs import consent_link, wait_for_form
from devstack.stack import ENCRYPTED_KEY_BLOCK, LocalStack, local_stack

DEPLOYMENT = "authenticate-connector-instance/authenticate-infusionsoft-erp"
SERVER = "https://dt123.infusionsoft.com"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The running stack, with the sandbox blocks saved."""
    with local_stack(tmp_path_factory.mktemp("stack"), lifetime=3600) as running:
        yield running


@pytest.fixture(scope="session")
async def sandbox_blocks(stack: LocalStack) -> LocalStack:
    """The stack, once its blocks point at the sandbox."""
    await stack.save_sandbox_blocks()
    return stack


@pytest.fixture
async def prefect(sandbox_blocks: LocalStack) -> AsyncIterator[PrefectClient]:
    """A Prefect client of the stack's server."""
    async with get_client() as client:
        yield client


@pytest.fixture
async def sandbox(sandbox_blocks: LocalStack) -> AsyncIterator[SandboxAdmin]:
    """The sandbox's admin API."""
    async with httpx.AsyncClient(base_url=sandbox_blocks.sandbox.url, timeout=10) as http:
        yield SandboxAdmin(http)


@dataclass
class SandboxAdmin:
    """What the tests read of the sandbox: instances and the request journal."""

    http: httpx.AsyncClient

    async def instances(self, tag: str | None = None) -> list[dict[str, Any]]:
        """Every instance, or those carrying `tag`."""
        items = (await self.http.get("/_sandbox/instances")).json()
        return [item for item in items if tag is None or tag in item["tags"]]

    async def requests(self) -> list[dict[str, Any]]:
        """The journal of platform and provider requests."""
        return (await self.http.get("/_sandbox/requests")).json()


def run_tag(flow_run_id: UUID) -> str:
    """The tag of the instance created by a run."""
    return f"prefect-flow-run-{flow_run_id}"


async def start_authorization(instance_name: str, **parameters: Any) -> FlowRun:
    """Start an authorization run from the served deployment, as the UI's Run button does."""
    values: dict[str, Any] = {
        "instance_name": instance_name,
        "configuration": {"infusionsoft.server": SERVER},
        "secret_configuration": {"infusionsoft.private.key": ENCRYPTED_KEY_BLOCK},
    }
    values.update(parameters)
    return await arun_deployment(DEPLOYMENT, parameters=values, timeout=0, as_subflow=False)


async def consent_redirect(client: PrefectClient, run: FlowRun, decision: str = "approve") -> str:
    """Wait for the run's form, open its consent link, decide, and return the redirect address."""
    _, description = await wait_for_form(client, run.id, timeout=90)
    return await decide(consent_link(description), decision)  # type: ignore[arg-type]


def database_rows_containing(home: Path, needles: list[str]) -> list[str]:
    """Where in the Prefect database any of `needles` appears (table and column)."""
    found: list[str] = []
    with sqlite3.connect(f"file:{home / 'prefect.db'}?mode=ro", uri=True) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [row[1] for row in db.execute(f"PRAGMA table_info('{table}')")]
            for column in columns:
                for needle in needles:
                    query = (
                        f"SELECT COUNT(*) FROM '{table}' WHERE CAST(\"{column}\" AS TEXT) LIKE ?"  # noqa: S608
                    )
                    if db.execute(query, (f"%{needle}%",)).fetchone()[0]:
                        found.append(f"{table}.{column} holds {needle[:6]}…")
    return found


async def wait_for_events(
    client: PrefectClient, name: str, *, resource_prefix: str, timeout: float = 30
) -> list[Any]:
    """Events named `name` whose resource id starts with `resource_prefix` (waits for one)."""
    import asyncio
    import time

    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=[name]),
        resource=EventResourceFilter(id_prefix=[resource_prefix]),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = await client.read_events(filter=event_filter, limit=50)
        if page.events:
            return list(page.events)
        await asyncio.sleep(0.5)
    return []
