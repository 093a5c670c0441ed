"""Chaining: a new instance's event starts the export; the health check watches instances."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment

from blocks import ConnectorInstance
from flows.reauthorize import INSTANCE_REAUTHORIZED, reauthorization_tag
from flows.steps.events import INSTANCE_BROKEN, INSTANCE_RECOVERED
from flows.steps.health import read_record
from flows.steps.saved_instances import saved_instance_names
from tests.e2e.conftest import (
    SandboxAdmin,
    authorize_through_deployment,
    run_tag,
    runs_of_deployment,
    table_artifact,
    wait_for_deployment_run,
    wait_for_events,
)
from tooling.devstack.consent import decide
from tooling.devstack.runs import consent_link, resume_with_answer, wait_for_final, wait_for_form
from tooling.devstack.stack import LocalStack

pytestmark = pytest.mark.e2e

EXPORT = "export-connector-resource/export-connector-resource"
VERIFY = "verify-connector-instances/verify-connector-instances"
REAUTHORIZE = "reauthorize-connector-instance/reauthorize-connector-instance"


@pytest.fixture(scope="module")
async def no_scheduled_checks(sandbox_blocks: LocalStack) -> AsyncIterator[None]:
    """The daily check's schedule switched off, so only this module's checks see changes."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(VERIFY)
        schedules = await client.read_deployment_schedules(deployment.id)
        assert [item.schedule.cron for item in schedules] == ["0 6 * * *"]  # type: ignore[union-attr]
        for item in schedules:
            await client.update_deployment_schedule(deployment.id, item.id, active=False)
    yield


async def run_check(
    client: PrefectClient, **parameters: Any
) -> tuple[FlowRun, list[dict[str, Any]]]:
    """Run the health check deployment now, as its schedule would; return its table."""
    run = await arun_deployment(VERIFY, parameters=parameters, timeout=0, as_subflow=False)
    final = await wait_for_final(client, run.id, timeout=60)
    assert final.state is not None and final.state.is_completed(), final.state
    return final, await table_artifact(client, run.id, "connector-instance-health")


def row_of(table: list[dict[str, Any]], block: str) -> dict[str, Any]:
    (row,) = [row for row in table if row["block"] == block]
    return row


async def test_a_new_instance_is_exported_by_its_event(
    prefect: PrefectClient, sandbox_blocks: LocalStack, export_trigger_on: None
) -> None:
    authorization, instance_id = await authorize_through_deployment(prefect, "Export ERP")

    # Nobody starts the export: the deployment trigger does, on the created event.
    export = await wait_for_deployment_run(
        prefect, EXPORT, parameter=("instance_block", "export-erp"), timeout=60
    )
    final = await wait_for_final(prefect, export.id, timeout=60)
    assert final.state is not None and final.state.is_completed(), final.state
    assert final.parameters["resource"] == "contacts"

    summary = await final.state.result()
    expected = sandbox_blocks.sandbox.config.records_per_resource
    assert expected == 1000
    assert (summary.instance_id, summary.records, summary.total_reported) == (
        instance_id,
        expected,
        expected,
    )
    path = sandbox_blocks.home / "exports" / "export-erp" / f"contacts-{export.id}.jsonl"
    assert summary.location == str(path)
    ids = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert ids == list(range(1, expected + 1))
    assert summary.pages == 5 and summary.bytes == path.stat().st_size

    (row,) = await table_artifact(prefect, export.id, "export-export-erp-contacts")
    assert row["records"] == expected and row["file"] == str(path)
    assert authorization.id != export.id


async def test_a_deleted_instance_is_reported_broken_and_cannot_be_reauthorized(
    prefect: PrefectClient, sandbox: SandboxAdmin, no_scheduled_checks: None
) -> None:
    _, instance_id = await authorize_through_deployment(prefect, "Deleted ERP")
    block = "deleted-erp"

    # The scheduled check, run now with its defaults: every saved instance is pinged.
    _, table = await run_check(prefect)
    assert {row["block"] for row in table} == set(await saved_instance_names())
    row = row_of(table, block)
    assert (row["instance id"], row["status"], row["change"]) == (instance_id, "ok", "")

    saved = await ConnectorInstance.aload(block)
    async with saved.credentials.get_client() as platform:
        await platform.delete_instance(instance_id)
    _, table = await run_check(prefect, instance_blocks=[block])
    row = row_of(table, block)
    assert (row["status"], row["problem"], row["change"]) == ("broken", "deleted", "broken")
    assert row["what to do"].startswith("Authorize a new instance")
    broken = await wait_for_events(
        prefect, INSTANCE_BROKEN, resource_prefix=f"open-connectors.instance.{instance_id}"
    )
    assert len(broken) == 1
    assert broken[0].payload["problem"] == "deleted" and broken[0].payload["block_name"] == block

    # A deleted instance cannot keep its id: the re-authorization says what to do instead,
    # before asking anybody for consent, and creates nothing.
    before = len(await sandbox.instances())
    journal_before = len(await sandbox.requests())
    run = await arun_deployment(
        REAUTHORIZE, parameters={"instance_block": block}, timeout=0, as_subflow=False
    )
    final = await wait_for_final(prefect, run.id, timeout=60)
    assert final.state is not None and final.state.is_failed()
    message = final.state.message or ""
    assert "deleted" in message and "authenticate-infusionsoft-erp" in message
    assert len(await sandbox.instances()) == before
    asked = [r for r in (await sandbox.requests())[journal_before:] if "oauth" in r["path"]]
    assert asked == []


async def test_a_revoked_instance_is_reauthorized_and_recovers_with_the_same_id(
    prefect: PrefectClient, sandbox: SandboxAdmin, no_scheduled_checks: None
) -> None:
    authorization, instance_id = await authorize_through_deployment(prefect, "Revoked ERP")
    block = "revoked-erp"
    original = await ConnectorInstance.aload(block)
    revoked = await sandbox.http.post(f"/_sandbox/instances/{instance_id}/revoke")
    assert revoked.status_code == 200

    # The check finds it broken and, as asked, starts one re-authorization run.
    _, table = await run_check(prefect, instance_blocks=[block], reauthorize_broken=True)
    row = row_of(table, block)
    assert (row["status"], row["problem"], row["change"]) == ("broken", "revoked", "broken")
    reauthorization = UUID(row["re-authorization run"])
    broken = await wait_for_events(
        prefect, INSTANCE_BROKEN, resource_prefix=f"open-connectors.instance.{instance_id}"
    )
    assert broken and broken[0].payload["problem"] == "revoked"

    # It waits for the account owner like an authorization: suspended, with a consent link.
    waiting, description = await wait_for_form(prefect, reauthorization, timeout=60)
    assert waiting.state is not None and waiting.state.name == "Suspended"
    assert waiting.parameters == {
        "instance_block": block,
        "oauth_app_block": "infusionsoft-oauth-app",
        "authorization_timeout_minutes": 1440,
    }

    # The next check finds it still broken: reported, not announced again, and no second
    # re-authorization while the first one waits.
    _, table = await run_check(prefect, instance_blocks=[block], reauthorize_broken=True)
    row = row_of(table, block)
    assert (row["status"], row["change"]) == ("broken", "")
    assert row["re-authorization run"] == str(reauthorization)

    redirect = await decide(consent_link(description))
    await resume_with_answer(prefect, reauthorization, {"code": redirect})
    final = await wait_for_final(prefect, reauthorization)
    assert final.state is not None and final.state.is_completed(), final.state
    summary = await final.state.result()
    assert (summary.instance_id, summary.block_name, summary.updated) == (
        instance_id,
        block,
        True,
    )

    # The same instance, valid again, still carrying its creation tag; no other instance.
    (instance,) = await sandbox.instances(reauthorization_tag(str(reauthorization)))
    assert instance["id"] == instance_id and instance["valid"]
    assert run_tag(authorization.id) in instance["tags"]
    assert [item["id"] for item in await sandbox.instances(run_tag(authorization.id))] == [
        instance_id
    ]
    refreshed = await ConnectorInstance.aload(block)
    assert refreshed.instance_id == instance_id
    assert refreshed.authorized_by_flow_run == str(reauthorization)
    assert refreshed.token.get_secret_value() == instance["token"]
    assert original.authorized_by_flow_run == str(authorization.id)
    assert await wait_for_events(
        prefect, INSTANCE_REAUTHORIZED, resource_prefix=f"open-connectors.instance.{instance_id}"
    )

    _, table = await run_check(prefect, instance_blocks=[block])
    row = row_of(table, block)
    assert (row["instance id"], row["status"], row["change"]) == (instance_id, "ok", "recovered")
    recovered = await wait_for_events(
        prefect, INSTANCE_RECOVERED, resource_prefix=f"open-connectors.instance.{instance_id}"
    )
    assert len(recovered) == 1 and recovered[0].payload["previous_problem"] == "revoked"
    broken = await wait_for_events(
        prefect, INSTANCE_BROKEN, resource_prefix=f"open-connectors.instance.{instance_id}"
    )
    assert len(broken) == 1  # one breakage, one announcement, however many checks saw it
    reauthorizations = await runs_of_deployment(
        prefect, REAUTHORIZE, parameter=("instance_block", block)
    )
    assert [run.id for run in reauthorizations] == [reauthorization]
    record = await read_record(block)
    assert record is not None and record.status == "ok" and record.instance_id == instance_id
    assert record.reauthorization_flow_run is None


async def test_a_zendesk_instance_is_checked_and_reauthorized_like_any_other(
    prefect: PrefectClient, sandbox: SandboxAdmin, no_scheduled_checks: None
) -> None:
    # A connector without a hand-written profile: its definition comes from the platform.
    _, instance_id = await authorize_through_deployment(
        prefect,
        "Zendesk desk",
        element_key="Zendesk (zendesk)",  # as the run form's catalogue sends it
        configuration={"zendesk.subdomain": "acme"},
        secret_configuration={},
    )
    block = "zendesk-desk"
    _, table = await run_check(prefect, instance_blocks=[block])
    assert (row_of(table, block)["status"], row_of(table, block)["change"]) == ("ok", "")

    revoked = await sandbox.http.post(f"/_sandbox/instances/{instance_id}/revoke")
    assert revoked.status_code == 200
    _, table = await run_check(prefect, instance_blocks=[block], reauthorize_broken=True)
    row = row_of(table, block)
    assert (row["status"], row["problem"]) == ("broken", "revoked")
    reauthorization = UUID(row["re-authorization run"])

    _, description = await wait_for_form(prefect, reauthorization, timeout=60)
    assert "Zendesk" in description
    redirect = await decide(consent_link(description))
    await resume_with_answer(prefect, reauthorization, {"code": redirect})
    final = await wait_for_final(prefect, reauthorization)
    assert final.state is not None and final.state.is_completed(), final.state

    # The same instance, valid again, its own configuration kept through the new code.
    (instance,) = await sandbox.instances(reauthorization_tag(str(reauthorization)))
    assert (instance["id"], instance["valid"]) == (instance_id, True)
    assert instance["element"]["key"] == "zendesk"
    assert instance["configuration"]["zendesk.subdomain"] == "acme"
    refreshed = await ConnectorInstance.aload(block)
    assert (refreshed.instance_id, refreshed.element_key) == (instance_id, "zendesk")
    assert refreshed.token.get_secret_value() == instance["token"]
    _, table = await run_check(prefect, instance_blocks=[block])
    row = row_of(table, block)
    assert (row["status"], row["change"]) == ("ok", "recovered")
