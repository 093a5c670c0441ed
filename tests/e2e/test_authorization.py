"""Authorizations through the served deployment, answered the way people answer them."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import PrefectHTTPStatusError

from blocks import ConnectorInstance, StateSigningKey
from flows.steps.events import INSTANCE_CREATED, INSTANCE_FAILED
from tests.e2e.conftest import (
    SandboxAdmin,
    consent_redirect,
    run_tag,
    save_someone_elses_instance,
    start_authorization,
    wait_for_events,
)
from tests.e2e.leak_audit import database_findings, file_findings
from tooling.devstack.runs import (
    ResumeRefused,
    read_run_input,
    resume_with_answer,
    wait_for_final,
    wait_for_form,
)
from tooling.devstack.stack import ENCRYPTED_KEY_BLOCK, LocalStack

pytestmark = pytest.mark.e2e


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def test_approval_pasted_as_the_redirect_address_creates_one_saved_instance(
    prefect: PrefectClient, sandbox: SandboxAdmin, sandbox_blocks: LocalStack
) -> None:
    run = await start_authorization("Acme ERP", tags=["team-a"])
    form_run, description = await wait_for_form(prefect, run.id)
    assert form_run.state is not None and form_run.state.name == "Suspended"
    assert (
        "Authorize Infusionsoft ERP" in description
        and "/provider/app/oauth/authorize" in description
    )

    redirect = await consent_redirect(prefect, run)
    code = query(redirect)["code"]
    await resume_with_answer(prefect, run.id, {"code": redirect})
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed(), final.state

    # Exactly one instance, tagged with the run, its token saved in the block.
    instances = await sandbox.instances(run_tag(run.id))
    assert len(instances) == 1
    instance = instances[0]
    assert "team-a" in instance["tags"]
    block = await ConnectorInstance.aload("acme-erp")
    assert block.instance_id == instance["id"]
    assert block.token.get_secret_value() == instance["token"]
    assert block.authorized_by_flow_run == str(run.id)
    async with block.get_client() as client:
        assert (await client.ping(block.hub))["endpoint"] == "infusionsofterp"

    # The summary is the run's result; the answer was deleted from the run's input.
    summary = await final.state.result()
    assert summary.instance_id == instance["id"] and summary.block_name == "acme-erp"
    assert await read_run_input(prefect, run.id, "suspended-authorization-1-response") is None

    # Downstream flows can follow: the event names the instance and the block.
    events = await wait_for_events(
        prefect, INSTANCE_CREATED, resource_prefix=f"open-connectors.instance.{instance['id']}"
    )
    assert events and events[0].payload["block_name"] == "acme-erp"

    # No secret anywhere the run left things behind.
    config = sandbox_blocks.sandbox.config
    secrets = [
        config.user_secret,
        config.organization_secret,
        config.oauth_apps[0].client_secret,
        instance["token"],
        code,
    ]
    secret_block = await _secret_value(ENCRYPTED_KEY_BLOCK)
    secrets.append(secret_block)
    await asyncio.sleep(2)  # let the server write the last logs and events
    home = sandbox_blocks.home
    assert database_findings(home / "prefect.db", secrets) == []
    assert file_findings(home / "storage", secrets) == []
    assert file_findings(home / "logs", secrets) == []
    # The scans do find what is there: the run's state is in its form and its cached link.
    state = query(redirect)["state"]
    assert database_findings(home / "prefect.db", [state])
    assert file_findings(home / "storage", [state])


async def test_code_and_state_typed_into_their_own_fields(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    run = await start_authorization("Typed fields")
    answer = query(await consent_redirect(prefect, run))
    await resume_with_answer(prefect, run.id, {"code": answer["code"], "state": answer["state"]})
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed(), final.state
    assert len(await sandbox.instances(run_tag(run.id))) == 1


async def test_refusal_fails_the_run_with_the_provider_words_and_no_instance(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    run = await start_authorization("Refused ERP")
    redirect = await consent_redirect(prefect, run, "deny")
    assert query(redirect)["error"] == "access_denied"
    await resume_with_answer(prefect, run.id, {"code": redirect})
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_failed()
    assert "access_denied" in (final.state.message or "")
    assert "User denied access to resource" in (final.state.message or "")
    assert await sandbox.instances(run_tag(run.id)) == []
    events = await wait_for_events(
        prefect, INSTANCE_FAILED, resource_prefix=f"open-connectors.authorization.{run.id}"
    )
    assert events and "access_denied" in events[0].payload["reason"]


async def test_a_foreign_state_is_refused_and_creates_nothing(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    run = await start_authorization("Forged ERP")
    answer = query(await consent_redirect(prefect, run))
    other_run = await start_authorization("Other ERP")
    await wait_for_form(prefect, other_run.id)
    # The code of this run with the state of another (as a forged or mixed-up answer).
    app = (await sandbox.http.get("/_sandbox/requests")).status_code  # sandbox reachable
    assert app == 200
    # Signed with the real key, but for another run: the answer must be refused.
    forged_state = (await StateSigningKey.aload_or_create()).signer().sign(other_run.id)
    await resume_with_answer(prefect, run.id, {"code": answer["code"], "state": forged_state})
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_failed()
    assert "state does not match" in (final.state.message or "")
    assert await sandbox.instances(run_tag(run.id)) == []
    await prefect.set_flow_run_state(other_run.id, _cancelled(), force=True)


async def test_a_reused_code_fails_with_a_message_to_start_again(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    first = await start_authorization("First ERP")
    answer = query(await consent_redirect(prefect, first))
    await resume_with_answer(prefect, first.id, {"code": answer["code"], "state": answer["state"]})
    assert (await wait_for_final(prefect, first.id)).state.is_completed()  # type: ignore[union-attr]

    second = await start_authorization("Second ERP")
    # The first run's code with the second run's own state (a code used elsewhere).
    second_state = query(await consent_redirect(prefect, second))["state"]
    await resume_with_answer(prefect, second.id, {"code": answer["code"], "state": second_state})
    final = await wait_for_final(prefect, second.id)
    assert final.state is not None and final.state.is_failed()
    message = final.state.message or ""
    assert (
        "Authorization code already used." in message and "start a new authorization run" in message
    )
    assert await sandbox.instances(run_tag(second.id)) == []


async def test_an_unanswered_request_expires_with_a_clear_failure(prefect: PrefectClient) -> None:
    run = await start_authorization("Slow ERP", authorization_timeout_minutes=0.05)
    await wait_for_form(prefect, run.id)
    final = await wait_for_final(prefect, run.id, timeout=60)
    assert final.state is not None and final.state.is_failed()
    assert "never resumed" in (final.state.message or "")
    with pytest.raises(ResumeRefused):
        await resume_with_answer(prefect, run.id, {"code": "late"})


async def test_a_second_answer_is_refused_and_changes_nothing(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    run = await start_authorization("Twice ERP")
    redirect = await consent_redirect(prefect, run)
    await resume_with_answer(prefect, run.id, {"code": redirect})
    with pytest.raises(ResumeRefused, match="not paused"):
        await resume_with_answer(prefect, run.id, {"code": redirect})
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed()
    assert len(await sandbox.instances(run_tag(run.id))) == 1
    with pytest.raises(ResumeRefused, match="not paused"):
        await resume_with_answer(prefect, run.id, {"code": redirect})


async def test_an_empty_answer_shows_the_form_again(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    run = await start_authorization("Empty answer ERP")
    redirect = await consent_redirect(prefect, run)
    await resume_with_answer(prefect, run.id, {})
    await asyncio.sleep(1)
    waiting, description = await wait_for_form(prefect, run.id)
    assert waiting.state is not None
    assert waiting.state.state_details.pause_key == "authorization-2"
    assert "previous answer could not be used" in description
    await resume_with_answer(prefect, run.id, {"code": redirect})
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed(), final.state
    assert len(await sandbox.instances(run_tag(run.id))) == 1


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({"configuration": {"infusionsoft.server": "dt123.example.com"}}, "infusionsoft.server"),
        ({"credentials_block": "missing-block"}, "No Open Connectors Credentials block named"),
        ({"element_key": "Infusion Soft"}, "element_key"),
        (
            {"configuration": {"infusionsoft.server": SERVER_OK, "infusionsoft.private.key": "x"}}
            if (SERVER_OK := "dt1.infusionsoft.com")
            else {},
            "Secret block",
        ),
    ],
)
async def test_bad_parameters_fail_before_any_platform_call(
    prefect: PrefectClient, sandbox: SandboxAdmin, parameters: dict[str, object], words: str
) -> None:
    before = len(await sandbox.requests())
    try:
        run = await start_authorization("Bad input ERP", **parameters)
    except PrefectHTTPStatusError as refused:
        # The typed run form's schema refuses it before a run even exists.
        assert refused.response.status_code == 409 and words in refused.response.text
        assert len(await sandbox.requests()) == before
        return
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_failed()
    assert words in (final.state.message or "")
    assert len(await sandbox.requests()) == before


async def test_a_run_that_ends_before_reading_its_answer_keeps_no_code(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    # The name is taken while the run is suspended: resumed with the answer, the run
    # runs again from the top and stops at the block check, before it reads the answer.
    run = await start_authorization("Taken while waiting")
    redirect = await consent_redirect(prefect, run)
    await save_someone_elses_instance("taken-while-waiting", 99)
    await resume_with_answer(prefect, run.id, {"code": redirect})
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_failed(), final.state
    assert "already holds instance" in (final.state.message or "")
    assert await sandbox.instances(run_tag(run.id)) == []
    # Prefect would keep the unread answer, code and all, as the run's input. The
    # failure hook deletes it; Prefect runs hooks just after it records the Failed state.
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        stored = await prefect.filter_flow_run_input(
            run.id, key_prefix="suspended-", limit=100, exclude_keys=set()
        )
        answers = [item.key for item in stored if item.key.endswith("-response")]
        if not answers or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.25)
    assert stored, "the wait's schema and description are still there"
    assert answers == [], "the failure hook did not delete the unread answer within 30 s"
    assert not [item for item in stored if query(redirect)["code"] in item.value]


async def _secret_value(name: str) -> str:
    from prefect.blocks.system import Secret

    return str((await Secret.aload(name)).get())


def _cancelled():  # type: ignore[no-untyped-def]
    from prefect.states import Cancelled

    return Cancelled()
