"""One real stack for the end-to-end tests: `prefect server start`, the sandbox, a serving process.

The stack is started once per session on loopback ports, in a temporary
directory, and stopped at the end (every process by its own id).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment

from tests.e2e.leak_audit import LeakAudit
from tooling.devstack.consent import decide
from tooling.devstack.runs import consent_link, wait_for_form
from tooling.devstack.stack import ENCRYPTED_KEY_BLOCK, LocalStack, local_stack

DEPLOYMENT = "authenticate-connector-instance/authenticate-infusionsoft-erp"
SERVER = "https://dt123.infusionsoft.com"

pytestmark = pytest.mark.e2e


# The session's stack tests the suspended wait (restarts, kills, concurrency while
# suspended): its runs suspend at once. tests/e2e/test_hot_wait.py has its own stack.
# Every callback of the tests comes from one loopback address, where a real receiver
# behind a proxy sees one address per person: its per-client limits are raised here.
SUSPEND_AT_ONCE = {
    "OC_HOT_WAIT_SECONDS": "0",
    "OC_CALLBACK_CLIENT_BURST": "200",
    "OC_CALLBACK_CLIENT_PER_SECOND": "100",
    "OC_CALLBACK_MAX_CONCURRENT_CALLBACKS": "200",
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The running stack, with the sandbox blocks saved."""
    with local_stack(
        tmp_path_factory.mktemp("stack"), lifetime=3600, environment=SUSPEND_AT_ONCE
    ) as running:
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


async def start_authorizations(names: list[str]) -> list[FlowRun]:
    """Start one authorization per name, one after another, as people clicking Run do.

    Not all at once: on SQLite, twenty run creations in flight together (each reads the
    deployment, then writes) keep failing one another's write with "database is locked",
    and Prefect's client gives up on one after its fifth retry. The runs still wait and
    are answered together; only their creation is serial.
    """
    return [await start_authorization(name) for name in names]


async def consent_redirect(
    client: PrefectClient, run: FlowRun, decision: str = "approve", *, timeout: float = 90
) -> str:
    """Wait for the run's form, open its consent link, decide, and return the redirect address."""
    _, description = await wait_for_form(client, run.id, timeout=timeout)
    return await decide(consent_link(description), decision)  # type: ignore[arg-type]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests marked `audit_last` after every other test of the session."""
    items.sort(key=lambda item: item.get_closest_marker("audit_last") is not None)


@pytest.fixture(scope="session")
def leak_audit() -> LeakAudit:
    """The stacks of the session and the secrets they used, for the final leak audit."""
    return LeakAudit()


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


# -- deployments, schedules and downstream flows (appended) ---------------------------


async def authorize_through_deployment(
    client: PrefectClient, instance_name: str, **parameters: Any
) -> tuple[FlowRun, int]:
    """Run a whole authorization through the served deployment; return the run and instance id."""
    from tooling.devstack.runs import resume_with_answer, wait_for_final

    run = await start_authorization(instance_name, **parameters)
    await resume_with_answer(client, run.id, {"code": await consent_redirect(client, run)})
    final = await wait_for_final(client, run.id)
    assert final.state is not None and final.state.is_completed(), final.state
    summary = await final.state.result()
    return final, summary.instance_id


async def runs_of_deployment(
    client: PrefectClient, deployment_name: str, *, parameter: tuple[str, Any] | None = None
) -> list[FlowRun]:
    """The runs of a deployment (`flow/deployment`), optionally those with one parameter value."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment = await client.read_deployment_by_name(deployment_name)
    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    )
    if parameter is None:
        return runs
    key, value = parameter
    return [run for run in runs if (run.parameters or {}).get(key) == value]


async def wait_for_deployment_run(
    client: PrefectClient,
    deployment_name: str,
    *,
    parameter: tuple[str, Any],
    timeout: float = 60,
) -> FlowRun:
    """Wait until a run of the deployment with that parameter value exists (e.g. triggered)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = await runs_of_deployment(client, deployment_name, parameter=parameter)
        if runs:
            assert len(runs) == 1, f"{len(runs)} runs of {deployment_name} for {parameter}"
            return runs[0]
        await asyncio.sleep(0.5)
    raise AssertionError(f"No run of {deployment_name} with {parameter} within {timeout:.0f} s")


async def table_artifact(client: PrefectClient, flow_run_id: UUID, key: str) -> list[Any]:
    """The rows of a run's table artifact."""
    import json

    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            key=ArtifactFilterKey(any_=[key]),
        )
    )
    assert len(artifacts) == 1, f"{len(artifacts)} artifacts {key!r} for run {flow_run_id}"
    data = artifacts[0].data
    return json.loads(data) if isinstance(data, str) else list(data or [])


EXPORT_TRIGGER = "export-connector-resource__automation_1"


async def set_automation_enabled(client: PrefectClient, name: str, enabled: bool) -> None:
    """Pause or resume every automation of that name (serving again re-creates them)."""
    for automation in await client.read_automations_by_name(name):
        if automation.enabled != enabled:
            if enabled:
                await client.resume_automation(automation.id)
            else:
                await client.pause_automation(automation.id)


@pytest.fixture
def export_trigger_on() -> None:
    """Ask for this in a test that needs new instances to start exports."""


@pytest.fixture(autouse=True)
async def _export_trigger_only_where_asked(
    request: pytest.FixtureRequest, stack: LocalStack
) -> None:
    """Keep the export deployment's trigger paused, except in tests using `export_trigger_on`.

    The trigger starts an export of every new instance: in one shared stack that is
    background traffic during every other test (hub calls in the sandbox journal, runs
    competing for SQLite). Checked before each test, because serving again (a restart
    test) re-creates the trigger enabled.
    """
    async with get_client() as client:
        await set_automation_enabled(
            client, EXPORT_TRIGGER, "export_trigger_on" in request.fixturenames
        )


async def save_someone_elses_instance(block: str, instance_id: int) -> None:
    """Save an instance block of another authorization under `block` (a name taken)."""
    from blocks import ConnectorInstance, OpenConnectorsCredentials

    credentials = await OpenConnectorsCredentials.aload("open-connectors")
    await ConnectorInstance(
        instance_id=instance_id,
        instance_name="Someone else",
        element_key="infusionsofterp",
        token="t",
        credentials=credentials,
    ).asave(block, overwrite=True)
