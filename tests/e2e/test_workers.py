"""The project's own `prefect.yaml` on a process work pool: a run that outlives its worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client

import flows
from tests.e2e.conftest import DEPLOYMENT, SUSPEND_AT_ONCE, SandboxAdmin
from tests.e2e.leak_audit import LeakAudit
from tests.e2e.scenarios import suspend_and_resume
from tooling.devstack.processes import ManagedProcess
from tooling.devstack.stack import LocalStack, local_stack
from tooling.devstack.workers import WORK_POOL, create_process_pool, deploy_all

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(flows.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, leak_audit: LeakAudit
) -> AsyncIterator[LocalStack]:
    """A stack of its own with no serving process (nothing but a worker may pick a run up).

    It stands in for the session's stack in this module; the deployments come from
    `prefect deploy --all` on the `open-connectors` process pool.
    """
    home = tmp_path_factory.mktemp("worker-stack")
    with local_stack(home, serve=False, lifetime=1200, environment=SUSPEND_AT_ONCE) as running:
        create_process_pool(running.env, home)
        deploy_all(running.env, home, PROJECT_ROOT / "deployments")
        await running.save_sandbox_blocks()
        yield running
        await leak_audit.record(running)


@pytest.mark.timeout(600)
async def test_a_run_waiting_when_its_worker_is_killed_completes_on_another_worker(
    stack: LocalStack,
) -> None:
    async with get_client() as client:
        assert str(client.api_url).rstrip("/") == stack.prefect.api_url
        deployment = await client.read_deployment_by_name(DEPLOYMENT)
        assert deployment.work_pool_name == WORK_POOL
        assert stack.serving == []
    first = stack.start_worker("worker-first")
    second: list[ManagedProcess] = []

    def kill_first_start_second() -> None:
        # SIGKILL to the worker's process group, as an out-of-memory kill or a lost machine.
        first.kill()
        assert not first.is_running()
        second.append(stack.start_worker("worker-second"))

    async with (
        get_client() as client,
        httpx.AsyncClient(base_url=stack.sandbox.url, timeout=30) as admin,
    ):
        final = await suspend_and_resume(
            client, SandboxAdmin(admin), "Worker ERP", while_waiting=kill_first_start_second
        )
    # The first worker started the run, the second one finished it.
    run_id = str(final.id)
    assert run_id in first.log_path.read_text(errors="replace")
    assert run_id in second[0].log_path.read_text(errors="replace")
