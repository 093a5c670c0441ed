"""`create_instance`: one instance per run, its token saved before the check, announced."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow
from prefect.exceptions import PrefectHTTPStatusError

from blocks import ConnectorInstance
from flows.authenticate import AuthenticatedInstance, create_instance
from flows.steps.blocks import AuthorizationBlocks
from flows.steps.events import INSTANCE_CREATED
from flows.steps.parameters import AuthorizationParameters
from flows.steps.run_identity import current_flow_run_id, run_tag
from open_connectors import (
    AuthorizationCodeRejectedError,
    InstanceCheckFailedError,
    InstanceTokenNotSavedError,
)
from tests.unit.conftest import Events, Sandbox, grant_of, make_parameters, unique_block

pytestmark = pytest.mark.usefixtures("prefect_harness")

INSTANCES = "/elements/api-v2/instances"

BeforeCreate = Callable[[UUID], Awaitable[None]]


async def create(
    parameters: AuthorizationParameters,
    blocks: AuthorizationBlocks,
    code: str,
    before: BeforeCreate | None = None,
) -> tuple[UUID, AuthenticatedInstance]:
    """Run `create_instance` in a flow run; `before(run id)` runs first, in the same run."""

    @flow
    async def creating(parameters: AuthorizationParameters) -> dict[str, Any]:
        run_id = current_flow_run_id()
        if before is not None:
            await before(run_id)
        summary = await create_instance(parameters, blocks, grant_of(code))
        return {"run_id": run_id, "summary": summary}

    result = await creating(parameters)
    return result["run_id"], result["summary"]


async def test_the_instance_is_created_once_its_token_saved_and_announced(
    sandbox: Sandbox, blocks: AuthorizationBlocks, events: Events, run_logs: list[str]
) -> None:
    block_name = unique_block()
    code = await sandbox.new_code()
    run_id, summary = await create(make_parameters(block_name), blocks, code)

    [instance] = sandbox.instances(run_tag(run_id))
    assert "team-a" in instance.tags
    assert len(sandbox.requests("POST", INSTANCES)) == 1
    saved = await ConnectorInstance.aload(block_name)
    assert saved.instance_id == instance.id
    assert saved.token.get_secret_value() == instance.token
    assert saved.authorized_by_flow_run == str(run_id)
    assert summary == AuthenticatedInstance(
        instance_id=instance.id,
        instance_name="Acme ERP",
        element_key="infusionsofterp",
        block_name=block_name,
        created=True,
    )
    assert instance.token not in summary.model_dump_json()
    [event] = events.named(INSTANCE_CREATED)
    assert event["resource"]["prefect.resource.id"] == f"open-connectors.instance.{instance.id}"
    assert event["payload"]["block_name"] == block_name and event["payload"]["created"] is True
    assert instance.token not in repr(event) and code not in repr(event)
    assert run_logs and not any(instance.token in line or code in line for line in run_logs)


async def test_an_instance_already_tagged_with_the_run_is_adopted_without_a_post(
    sandbox: Sandbox, blocks: AuthorizationBlocks, events: Events
) -> None:
    block_name = unique_block()
    created: dict[str, Any] = {}

    async def an_earlier_attempt_created_it(run_id: UUID) -> None:
        created.update(await sandbox.create(tags=["team-a", run_tag(run_id)]))
        sandbox.forget_requests()

    _, summary = await create(
        make_parameters(block_name), blocks, "never-sent", an_earlier_attempt_created_it
    )

    assert summary.instance_id == created["id"] and summary.created is False
    assert sandbox.requests("POST", INSTANCES) == []
    saved = await ConnectorInstance.aload(block_name)
    assert saved.token.get_secret_value() == created["token"]
    assert events.named(INSTANCE_CREATED)[0]["payload"]["created"] is False


async def test_an_instance_that_does_not_answer_fails_the_task_with_its_token_saved(
    sandbox: Sandbox, blocks: AuthorizationBlocks, events: Events
) -> None:
    block_name = unique_block()
    sandbox.fail("GET", "/elements/api-v2/hubs/*", {"type": "status", "status": 401})
    code = await sandbox.new_code()

    with pytest.raises(InstanceCheckFailedError, match="does not answer") as caught:
        await create(make_parameters(block_name), blocks, code)

    [instance] = [item for item in sandbox.instances() if item.name == "Acme ERP"]
    saved = await ConnectorInstance.aload(block_name)
    assert saved.instance_id == instance.id
    assert saved.token.get_secret_value() == instance.token
    assert block_name in str(caught.value) and instance.token not in str(caught.value)
    assert len(sandbox.requests("POST", INSTANCES)) == 1
    assert events.named(INSTANCE_CREATED) == []


async def test_a_rejected_code_fails_without_instance_or_block(
    sandbox: Sandbox, blocks: AuthorizationBlocks, events: Events
) -> None:
    block_name = unique_block()

    with pytest.raises(AuthorizationCodeRejectedError) as caught:
        await create(make_parameters(block_name), blocks, "a-code-nobody-issued")

    assert "a-code-nobody-issued" not in str(caught.value)
    assert sandbox.instances() == []
    assert len(sandbox.requests("POST", INSTANCES)) == 1
    with pytest.raises(ValueError):
        await ConnectorInstance.aload(block_name)
    assert events.named(INSTANCE_CREATED) == []


def prefect_refusing_block_saves(monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
    """Prefect's API answers 503 to the first `times` saves of an instance block."""
    original = ConnectorInstance.asave
    refused: list[str] = []

    async def save(self: ConnectorInstance, name: str, *args: Any, **kwargs: Any) -> Any:
        if len(refused) < times:
            refused.append(name)
            request = httpx.Request("POST", "http://prefect.test/api/block_documents/")
            response = httpx.Response(503, request=request)
            raise PrefectHTTPStatusError(
                "503 Service Unavailable", request=request, response=response
            )
        return await original(self, name, *args, **kwargs)

    monkeypatch.setattr(ConnectorInstance, "asave", save)
    return refused


async def test_a_token_prefect_could_not_store_is_saved_by_the_steps_retry_without_a_second_post(
    sandbox: Sandbox, blocks: AuthorizationBlocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen on SQLite with 200 answers at once: the block save got 503 after the client's
    # retries, after the instance existed. The retried step finds it by the run's tag.
    block_name = unique_block()
    refused = prefect_refusing_block_saves(monkeypatch, times=1)
    code = await sandbox.new_code()

    @flow
    async def creating(parameters: AuthorizationParameters) -> AuthenticatedInstance:
        quick = create_instance.with_options(retry_delay_seconds=0)
        return await quick(parameters, blocks, grant_of(code))

    summary = await creating(make_parameters(block_name))

    assert refused == [block_name]
    [instance] = [item for item in sandbox.instances() if item.name == "Acme ERP"]
    assert len(sandbox.requests("POST", INSTANCES)) == 1
    assert summary.instance_id == instance.id
    saved = await ConnectorInstance.aload(block_name)
    assert saved.token.get_secret_value() == instance.token


async def test_a_token_prefect_keeps_refusing_fails_in_words_that_a_retry_saves_it(
    sandbox: Sandbox, blocks: AuthorizationBlocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    block_name = unique_block()
    prefect_refusing_block_saves(monkeypatch, times=10)
    code = await sandbox.new_code()

    @flow
    async def creating(parameters: AuthorizationParameters) -> AuthenticatedInstance:
        quick = create_instance.with_options(retry_delay_seconds=0)
        return await quick(parameters, blocks, grant_of(code))

    with pytest.raises(InstanceTokenNotSavedError) as caught:
        await creating(make_parameters(block_name))

    [instance] = [item for item in sandbox.instances() if item.name == "Acme ERP"]
    message = str(caught.value)
    assert f"Instance {instance.id} was created" in message and "Retry this run" in message
    assert "503" in message and instance.token not in message and code not in message
    assert len(sandbox.requests("POST", INSTANCES)) == 1  # three attempts, one POST
