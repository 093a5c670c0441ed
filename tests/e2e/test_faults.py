"""Faults injected in the sandbox, end to end through the served flow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import SetStateStatus
from prefect.states import AwaitingRetry

from blocks import ConnectorInstance, OpenConnectorsCredentials
from tests.e2e.conftest import SandboxAdmin, consent_redirect, run_tag, start_authorization
from tooling.devstack.runs import resume_with_answer, wait_for_final
from tooling.devstack.stack import LocalStack

pytestmark = pytest.mark.e2e

API = "/elements/api-v2"
OAUTH_URL = f"{API}/elements/infusionsofterp/oauth/url"
INSTANCES = f"{API}/instances"
PING = f"{API}/hubs/erp/ping"
CREDENTIALS = "fault-open-connectors"
MAX_ATTEMPTS = 3


@pytest.fixture
async def faults(sandbox: SandboxAdmin, sandbox_blocks: LocalStack) -> AsyncIterator[SandboxAdmin]:
    """The sandbox admin, a credentials block with a short retry budget, and no fault left after."""
    config = sandbox_blocks.sandbox.config
    await OpenConnectorsCredentials(
        base_url=sandbox_blocks.sandbox.api_base_url,
        user_secret=config.user_secret,
        organization_secret=config.organization_secret,
        max_attempts=MAX_ATTEMPTS,
        max_retry_wait_seconds=3,
    ).asave(CREDENTIALS, overwrite=True)
    await sandbox.http.delete("/_sandbox/faults")
    yield sandbox
    await sandbox.http.delete("/_sandbox/faults")


async def inject(admin: SandboxAdmin, method: str, path: str, *actions: dict[str, Any]) -> None:
    answer = await admin.http.post(
        "/_sandbox/faults", json={"method": method, "path": path, "actions": list(actions)}
    )
    assert answer.status_code == 201, answer.text


def status(code: int, **headers: str) -> dict[str, Any]:
    return {"type": "status", "status": code, "headers": headers}


async def calls(admin: SandboxAdmin, method: str, path: str, since: int) -> list[dict[str, Any]]:
    journal = (await admin.requests())[since:]
    return [entry for entry in journal if entry["method"] == method and entry["path"] == path]


async def authorize(prefect: PrefectClient, name: str) -> FlowRun:
    """Start a run with the fault credentials, approve, answer, and wait for its end."""
    run = await start_authorization(name, credentials_block=CREDENTIALS)
    await resume_with_answer(prefect, run.id, {"code": await consent_redirect(prefect, run)})
    return await wait_for_final(prefect, run.id, timeout=240)


async def test_transient_failures_are_retried_and_the_run_completes(
    prefect: PrefectClient, faults: SandboxAdmin
) -> None:
    await inject(faults, "POST", OAUTH_URL, status(503), {"type": "reset"})
    await inject(faults, "POST", INSTANCES, status(503), status(429, **{"Retry-After": "2"}))
    await inject(faults, "GET", PING, status(502))
    since = len(await faults.requests())
    final = await authorize(prefect, "Transient ERP")
    assert final.state is not None and final.state.is_completed(), final.state
    assert len(await calls(faults, "POST", OAUTH_URL, since)) == 3
    posts = await calls(faults, "POST", INSTANCES, since)
    assert [entry["status"] for entry in posts] == [503, 429, 200]
    waited = _seconds_between(posts[1], posts[2])
    assert waited >= 1.9, f"Retry-After 2 was not honoured ({waited:.2f} s)"
    assert [entry["status"] for entry in await calls(faults, "GET", PING, since)] == [502, 200]
    assert len(await faults.instances(run_tag(final.id))) == 1


async def test_a_long_retry_after_is_capped(prefect: PrefectClient, faults: SandboxAdmin) -> None:
    await inject(faults, "GET", INSTANCES, status(429, **{"Retry-After": "3600"}))
    since = len(await faults.requests())
    final = await authorize(prefect, "Capped ERP")
    assert final.state is not None and final.state.is_completed(), final.state
    lookups = await calls(faults, "GET", INSTANCES, since)
    waited = _seconds_between(lookups[0], lookups[1])
    assert 2.5 <= waited < 10, f"the wait was {waited:.2f} s, expected the 3 s cap"


async def test_client_errors_are_not_retried(prefect: PrefectClient, faults: SandboxAdmin) -> None:
    await inject(faults, "POST", INSTANCES, status(400))
    since = len(await faults.requests())
    final = await authorize(prefect, "Refused create ERP")
    assert final.state is not None and final.state.is_failed()
    assert "refused to create the instance" in (final.state.message or "")
    assert len(await calls(faults, "POST", INSTANCES, since)) == 1
    assert await faults.instances(run_tag(final.id)) == []


async def test_a_lost_answer_to_the_creation_still_ends_with_one_saved_instance(
    prefect: PrefectClient, faults: SandboxAdmin
) -> None:
    await inject(faults, "POST", INSTANCES, {"type": "commit_then_drop"})
    since = len(await faults.requests())
    final = await authorize(prefect, "Lost answer ERP")
    assert final.state is not None and final.state.is_completed(), final.state
    assert [entry["status"] for entry in await calls(faults, "POST", INSTANCES, since)] == [0]
    created = await faults.instances(run_tag(final.id))
    assert len(created) == 1
    block = await ConnectorInstance.aload("lost-answer-erp")
    assert block.instance_id == created[0]["id"]
    assert block.token.get_secret_value() == created[0]["token"]
    summary = await final.state.result()
    assert summary.created is False  # adopted, not created twice


async def test_a_code_that_expired_while_the_person_was_slow(
    prefect: PrefectClient, faults: SandboxAdmin
) -> None:
    run = await start_authorization("Slow person ERP", credentials_block=CREDENTIALS)
    redirect = await consent_redirect(prefect, run)
    assert (await faults.http.post("/_sandbox/codes/expire")).json()["expired"] >= 1
    await resume_with_answer(prefect, run.id, {"code": redirect})
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_failed()
    message = final.state.message or ""
    assert "Authorization code expired." in message and "start a new authorization run" in message
    assert await faults.instances(run_tag(run.id)) == []


async def test_exhausted_retries_end_failed_with_the_cause_in_words(
    prefect: PrefectClient, faults: SandboxAdmin
) -> None:
    await inject(faults, "POST", INSTANCES, *[status(503)] * 60)
    since = len(await faults.requests())
    final = await authorize(prefect, "Outage ERP")
    assert final.state is not None and final.state.is_failed()
    message = final.state.message or ""
    assert "kept failing (503)" in message and "create the instance" in message
    # Bounded: attempts per request x task attempts (503 proves nothing was processed,
    # so the client resends within its policy and raises; only the task retries it).
    assert len(await calls(faults, "POST", INSTANCES, since)) == MAX_ATTEMPTS * 3
    assert await faults.instances(run_tag(final.id)) == []


async def test_added_latency_is_tolerated(prefect: PrefectClient, faults: SandboxAdmin) -> None:
    await faults.http.put("/_sandbox/latency", json={"seconds": 0.4})
    final = await authorize(prefect, "Slow network ERP")
    assert final.state is not None and final.state.is_completed(), final.state


def _seconds_between(first: dict[str, Any], second: dict[str, Any]) -> float:
    return (
        datetime.fromisoformat(second["at"]) - datetime.fromisoformat(first["at"])
    ).total_seconds()


async def test_processed_then_504_with_a_lagging_list_sends_the_code_once(
    prefect: PrefectClient, faults: SandboxAdmin
) -> None:
    await faults.http.put("/_sandbox/quirks", json={"listing_lag_seconds": 4})
    await inject(faults, "POST", INSTANCES, {"type": "commit_then_status", "status": 504})
    since = len(await faults.requests())
    final = await authorize(prefect, "Gateway timeout ERP")
    assert final.state is not None and final.state.is_completed(), final.state
    posts = await calls(faults, "POST", INSTANCES, since)
    assert [(entry["status"], entry.get("fault")) for entry in posts] == [
        (504, "commit_then_status")
    ]
    created = await faults.instances(run_tag(final.id))
    assert len(created) == 1
    block = await ConnectorInstance.aload("gateway-timeout-erp")
    assert block.instance_id == created[0]["id"]
    assert block.token.get_secret_value() == created[0]["token"]


async def test_a_lag_longer_than_the_look_up_fails_in_words_and_a_retry_of_the_run_adopts(
    prefect: PrefectClient, faults: SandboxAdmin, sandbox_blocks: LocalStack
) -> None:
    config = sandbox_blocks.sandbox.config
    await OpenConnectorsCredentials(
        base_url=sandbox_blocks.sandbox.api_base_url,
        user_secret=config.user_secret,
        organization_secret=config.organization_secret,
        max_attempts=MAX_ATTEMPTS,
        max_retry_wait_seconds=3,
        ambiguous_lookup_seconds=4,
    ).asave("short-look-up", overwrite=True)
    lag = 25
    await faults.http.put("/_sandbox/quirks", json={"listing_lag_seconds": lag})
    await inject(faults, "POST", INSTANCES, {"type": "commit_then_status", "status": 504})
    since = len(await faults.requests())
    run = await start_authorization("Unlisted ERP", credentials_block="short-look-up")
    await resume_with_answer(prefect, run.id, {"code": await consent_redirect(prefect, run)})
    failed = await wait_for_final(prefect, run.id, timeout=240)
    sent_at = time.monotonic()

    assert failed.state is not None and failed.state.is_failed(), failed.state
    message = failed.state.message or ""
    assert "may exist" in message and "Retry of this same run" in message, message
    assert "start a new" not in message.lower()
    (created,) = await faults.instances(run_tag(run.id))  # made once, not yet listed
    with pytest.raises(ValueError):
        await ConnectorInstance.aload("unlisted-erp")

    # Once the platform lists it, a Retry of the same run (as the UI's Retry button
    # does) adopts it: no consent asked again, the code never sent a second time.
    await asyncio.sleep(max(0.0, lag - (time.monotonic() - sent_at)))
    retry = await prefect.set_flow_run_state(
        run.id, AwaitingRetry(scheduled_time=datetime.now(UTC), message="Retry from the API")
    )
    assert retry.status == SetStateStatus.ACCEPT, retry
    final = await wait_for_final(prefect, run.id, timeout=240)
    assert final.state is not None and final.state.is_completed(), final.state
    posts = await calls(faults, "POST", INSTANCES, since)
    assert [(entry["status"], entry.get("fault")) for entry in posts] == [
        (504, "commit_then_status")
    ]
    assert [item["id"] for item in await faults.instances(run_tag(run.id))] == [created["id"]]
    block = await ConnectorInstance.aload("unlisted-erp")
    assert block.instance_id == created["id"]
    assert block.token.get_secret_value() == created["token"]
