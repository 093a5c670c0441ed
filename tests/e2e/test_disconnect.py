"""Disconnect through the served deployment: live, already gone, unreachable platform."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment
from prefect.variables import Variable

from blocks import ConnectorInstance, OpenConnectorsCredentials
from flows.steps.events import INSTANCE_DELETED
from flows.steps.health import HealthRecord, utc_now, variable_name, write_record
from flows.steps.parameters import DEFAULT_CREDENTIALS_BLOCK, block_name_for
from flows.steps.saved_instances import saved_instance_names
from tests.e2e.conftest import SandboxAdmin, authorize_through_deployment, wait_for_events
from tooling.devstack.runs import wait_for_final
from tooling.devstack.stack import LocalStack

pytestmark = pytest.mark.e2e

DISCONNECT = "disconnect-connector-instance/disconnect-connector-instance"


async def disconnect(client: PrefectClient, block: str) -> FlowRun:
    """Run the disconnect deployment, as the UI's Run button does, and wait for its end."""
    run = await arun_deployment(
        DISCONNECT, parameters={"instance_block": block}, timeout=0, as_subflow=False
    )
    return await wait_for_final(client, run.id, timeout=180)


async def keep_health_record(block: str, instance_id: int) -> None:
    now = utc_now()
    await write_record(
        block, HealthRecord(instance_id=instance_id, status="ok", since=now, checked_at=now)
    )


async def block_exists(name: str) -> bool:
    return name in await saved_instance_names()


def secrets_of(stack: LocalStack) -> list[str]:
    config = stack.sandbox.config
    return [config.user_secret, config.organization_secret, config.oauth_apps[0].client_secret]


async def test_a_live_instance_is_deleted_then_its_block_and_record(
    prefect: PrefectClient, sandbox: SandboxAdmin, sandbox_blocks: LocalStack
) -> None:
    name = "Disconnect live"
    _, instance_id = await authorize_through_deployment(prefect, name)
    block = block_name_for(name)
    await keep_health_record(block, instance_id)

    final = await disconnect(prefect, block)

    assert final.state is not None and final.state.is_completed(), final.state
    summary = await final.state.result()
    assert (summary.instance_id, summary.already_deleted) == (instance_id, False)
    assert summary.health_record_deleted is True
    (instance,) = [item for item in await sandbox.instances() if item["id"] == instance_id]
    assert instance["deleted"] is True
    assert not await block_exists(block)  # the health check no longer lists it
    assert await Variable.aget(variable_name(block), default=None) is None
    events = await wait_for_events(
        prefect, INSTANCE_DELETED, resource_prefix=f"open-connectors.instance.{instance_id}"
    )
    assert len(events) == 1
    payload: dict[str, Any] = events[0].payload
    assert payload["block_name"] == block and payload["already_deleted"] is False
    text = events[0].model_dump_json()
    token = instance["token"]
    assert not any(secret in text for secret in [*secrets_of(sandbox_blocks), token])


async def test_an_instance_already_deleted_completes_and_is_cleaned_up(
    prefect: PrefectClient, sandbox: SandboxAdmin, sandbox_blocks: LocalStack
) -> None:
    name = "Disconnect gone"
    _, instance_id = await authorize_through_deployment(prefect, name)
    block = block_name_for(name)
    await keep_health_record(block, instance_id)
    credentials = await OpenConnectorsCredentials.aload(DEFAULT_CREDENTIALS_BLOCK)
    async with credentials.get_client() as client:
        await client.delete_instance(instance_id)  # deleted in Open Connectors itself

    final = await disconnect(prefect, block)

    assert final.state is not None and final.state.is_completed(), final.state
    summary = await final.state.result()
    assert (summary.instance_id, summary.already_deleted) == (instance_id, True)
    assert not await block_exists(block)
    assert await Variable.aget(variable_name(block), default=None) is None


async def test_an_unreachable_platform_deletes_nothing(
    prefect: PrefectClient, sandbox_blocks: LocalStack
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    block = "disconnect-unreachable"
    await ConnectorInstance(
        instance_id=424242,
        instance_name="Disconnect unreachable",
        element_key="zendesk",
        token="unreachable-token",
        credentials=OpenConnectorsCredentials(
            base_url=f"http://127.0.0.1:{port}/elements/api-v2",
            user_secret="unreachable-user-secret",
            organization_secret="unreachable-organization-secret",
            max_attempts=1,
            timeout_seconds=5,
        ),
    ).asave(block, overwrite=True)
    await keep_health_record(block, 424242)

    final = await disconnect(prefect, block)

    assert final.state is not None and final.state.is_failed(), final.state
    message = final.state.message or ""
    assert "Could not reach Open Connectors" in message and "kept" in message, message
    assert "unreachable-" not in message
    assert await block_exists(block)
    assert await Variable.aget(variable_name(block), default=None) is not None
    await ConnectorInstance.adelete(block)
    await Variable.aunset(variable_name(block))


async def test_a_zendesk_instance_is_authorized_with_its_own_configuration(
    prefect: PrefectClient, sandbox: SandboxAdmin, sandbox_blocks: LocalStack
) -> None:
    _, instance_id = await authorize_through_deployment(
        prefect,
        "Zendesk support",
        element_key="zendesk",
        configuration={"zendesk.subdomain": "acme"},
        secret_configuration={},
    )
    (instance,) = [item for item in await sandbox.instances() if item["id"] == instance_id]
    assert instance["element"]["key"] == "zendesk"
    assert instance["configuration"]["zendesk.subdomain"] == "acme"
    saved = await ConnectorInstance.aload(block_name_for("Zendesk support"))
    assert saved.element_key == "zendesk"
