"""The end-to-end subset on a Prefect server backed by PostgreSQL (a throwaway local cluster).

The same scenarios as on SQLite: the happy path, suspend and resume from a
deployment, concurrent answers through the callback receiver, a server restart
while runs wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from prefect.client.orchestration import PrefectClient, get_client

from blocks import ConnectorInstance
from tests.e2e.conftest import (
    SUSPEND_AT_ONCE,
    SandboxAdmin,
    authorize_through_deployment,
    run_tag,
)
from tests.e2e.leak_audit import LeakAudit
from tests.e2e.scenarios import (
    answers_after_a_server_restart,
    concurrent_answers,
    suspend_and_resume,
)
from tooling.devstack.stack import LocalStack, local_stack

pytestmark = pytest.mark.e2e

CONCURRENT = 5


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, leak_audit: LeakAudit
) -> AsyncIterator[LocalStack]:
    """This module's stack on PostgreSQL, blocks saved (it stands in for the session's stack)."""
    home = tmp_path_factory.mktemp("postgresql-stack")
    with local_stack(
        home, database="postgresql", lifetime=1800, environment=SUSPEND_AT_ONCE
    ) as running:
        await running.save_sandbox_blocks()
        yield running
        # The secrets it used, now that every run is done; it dumps its database as it stops.
        await leak_audit.record(running)
    # Stopped: the cluster and its directory are gone.
    assert running.postgresql is not None and not running.postgresql.root.exists()


@pytest.fixture
async def pg_client(stack: LocalStack) -> AsyncIterator[PrefectClient]:
    """A client of this module's server (it is on PostgreSQL)."""
    async with get_client() as client:
        assert str(client.api_url).rstrip("/") == stack.prefect.api_url
        yield client


@pytest.fixture
async def pg_sandbox(stack: LocalStack) -> AsyncIterator[SandboxAdmin]:
    """This module's sandbox."""
    async with httpx.AsyncClient(base_url=stack.sandbox.url, timeout=30) as http:
        yield SandboxAdmin(http)


# The first test pays for the module's stack (cluster, migrations, serving): minutes when busy.
@pytest.mark.timeout(900)
async def test_the_server_runs_on_the_local_postgresql(stack: LocalStack) -> None:
    cluster = stack.postgresql
    assert cluster is not None and stack.prefect.database_url == cluster.connection_url
    assert cluster.process.is_running()
    # The server's migrations made its tables in the cluster: Prefect really uses it.
    connection = await asyncpg.connect(cluster.connection_url.replace("+asyncpg", ""))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables")
        tables = {row["tablename"] for row in rows}
        runs = await connection.fetchval("SELECT count(*) FROM flow_run")
    finally:
        await connection.close()
    assert {"flow_run", "deployment", "block_document"} <= tables
    assert runs >= 0
    # No SQLite database was made beside it.
    assert not (stack.home / "prefect.db").exists()


async def test_happy_path_saves_the_instance_and_its_token(
    pg_client: PrefectClient, pg_sandbox: SandboxAdmin
) -> None:
    final, instance_id = await authorize_through_deployment(pg_client, "Postgres ERP")
    (instance,) = await pg_sandbox.instances(run_tag(final.id))
    assert instance["id"] == instance_id
    block = await ConnectorInstance.aload("postgres-erp")
    assert block.instance_id == instance_id
    assert block.token.get_secret_value() == instance["token"]


async def test_suspend_and_resume_from_a_deployment(
    pg_client: PrefectClient, pg_sandbox: SandboxAdmin
) -> None:
    await suspend_and_resume(pg_client, pg_sandbox, "Postgres suspended ERP")


@pytest.mark.timeout(900)
async def test_concurrent_answers_through_the_receiver(
    pg_client: PrefectClient, pg_sandbox: SandboxAdmin
) -> None:
    names = [f"Postgres concurrent {number:02d}" for number in range(CONCURRENT)]
    await concurrent_answers(pg_client, pg_sandbox, names, seed=20261201, spread=1.0, timeout=600)


@pytest.mark.timeout(600)
async def test_answers_after_a_server_restart_complete_the_waiting_runs(stack: LocalStack) -> None:
    await answers_after_a_server_restart(stack, ["Postgres restart A", "Postgres restart B"])
