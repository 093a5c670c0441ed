"""`reauthorize_instance`: one `PUT` per run, the id kept, the new token saved."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from prefect import flow

from blocks import ConnectorInstance
from flows.reauthorize import ReauthorizationParameters, ReauthorizedInstance, reauthorize_instance
from flows.steps.blocks import AuthorizationBlocks
from flows.steps.events import INSTANCE_REAUTHORIZED
from flows.steps.run_identity import current_flow_run_id, reauthorization_tag
from open_connectors import InstanceGoneError
from tests.unit.conftest import (
    SERVER_CONFIGURATION,
    Events,
    Sandbox,
    grant_of,
    unique_block,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")

CREATED_BY = "prefect-flow-run-5f0c1d2e-0000-4000-8000-000000000001"


async def saved_instance(sandbox: Sandbox, blocks: AuthorizationBlocks) -> ConnectorInstance:
    """An instance on the platform and its (unsaved) block, as an earlier run left them."""
    created = await sandbox.create(tags=["team-a", CREATED_BY, "prefect-reauthorized-by-old"])
    return ConnectorInstance(
        instance_id=created["id"],
        instance_name=created["name"],
        element_key="infusionsofterp",
        token=created["token"],
        credentials=blocks.credentials,
        authorized_by_flow_run=CREATED_BY.removeprefix("prefect-flow-run-"),
    )


def parameters_for(saved: ConnectorInstance, block_name: str) -> ReauthorizationParameters:
    return ReauthorizationParameters(
        instance_name=saved.instance_name,
        element_key=saved.element_key,
        connector_name="Infusionsoft ERP",
        instance_block=block_name,
        instance_id=saved.instance_id,
        hub=saved.hub,
        configuration=SERVER_CONFIGURATION,
        secret_configuration={},
        oauth_app_block="unused-oauth-app",
        timeout_seconds=300,
    )


async def reauthorize(
    parameters: ReauthorizationParameters,
    blocks: AuthorizationBlocks,
    saved: ConnectorInstance,
    code: str,
) -> tuple[UUID, ReauthorizedInstance]:
    """Run `reauthorize_instance` in a flow run; its run id and summary."""

    @flow
    async def reauthorizing(parameters: ReauthorizationParameters) -> dict[str, Any]:
        summary = await reauthorize_instance(parameters, blocks, saved, grant_of(code))
        return {"run_id": current_flow_run_id(), "summary": summary}

    result = await reauthorizing(parameters)
    return result["run_id"], result["summary"]


async def test_the_instance_is_reauthorized_once_keeping_its_id_and_tags(
    sandbox: Sandbox, blocks: AuthorizationBlocks, events: Events
) -> None:
    saved = await saved_instance(sandbox, blocks)
    block_name = unique_block()
    code = await sandbox.new_code()
    sandbox.forget_requests()

    run_id, summary = await reauthorize(parameters_for(saved, block_name), blocks, saved, code)

    assert len(sandbox.requests("PUT", f"/instances/{saved.instance_id}")) == 1
    assert (summary.instance_id, summary.block_name, summary.updated) == (
        saved.instance_id,
        block_name,
        True,
    )
    [instance] = sandbox.instances()
    assert instance.id == saved.instance_id
    assert sorted(instance.tags) == sorted(["team-a", CREATED_BY, reauthorization_tag(run_id)])
    stored = await ConnectorInstance.aload(block_name)
    assert stored.instance_id == saved.instance_id
    assert stored.token.get_secret_value() == sandbox.token_of(saved.instance_id)
    assert stored.authorized_by_flow_run == str(run_id)
    [event] = events.named(INSTANCE_REAUTHORIZED)
    assert event["payload"]["updated"] is True and event["payload"]["block_name"] == block_name
    assert stored.token.get_secret_value() not in repr(event) and code not in repr(event)


async def test_a_put_whose_answer_was_lost_is_adopted_not_sent_again(
    sandbox: Sandbox, blocks: AuthorizationBlocks, events: Events
) -> None:
    saved = await saved_instance(sandbox, blocks)
    block_name = unique_block()
    code = await sandbox.new_code()
    sandbox.fail(
        "PUT", f"/elements/api-v2/instances/{saved.instance_id}", {"type": "commit_then_drop"}
    )
    sandbox.forget_requests()

    run_id, summary = await reauthorize(parameters_for(saved, block_name), blocks, saved, code)

    assert len(sandbox.requests("PUT", f"/instances/{saved.instance_id}")) == 1
    assert summary.instance_id == saved.instance_id and summary.updated is False
    assert reauthorization_tag(run_id) in sandbox.instances()[0].tags
    stored = await ConnectorInstance.aload(block_name)
    assert stored.token.get_secret_value() == sandbox.token_of(saved.instance_id)


async def test_a_deleted_instance_cannot_be_reauthorized(
    sandbox: Sandbox, blocks: AuthorizationBlocks, events: Events
) -> None:
    saved = await saved_instance(sandbox, blocks)
    block_name = unique_block()
    sandbox.delete(saved.instance_id)
    sandbox.forget_requests()

    with pytest.raises(InstanceGoneError, match="deleted"):
        await reauthorize(parameters_for(saved, block_name), blocks, saved, "fresh-code")

    assert sandbox.requests("PUT", f"/instances/{saved.instance_id}") == []
    with pytest.raises(ValueError):
        await ConnectorInstance.aload(block_name)
    assert events.named(INSTANCE_REAUTHORIZED) == []
