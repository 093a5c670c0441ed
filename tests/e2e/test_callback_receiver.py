"""The provider's redirect reaches the real callback receiver, which resumes the real run."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.states import Cancelled

from blocks import DEFAULT_STATE_KEY_BLOCK, StateSigningKey
from open_connectors import StateSigner
from tests.e2e.conftest import SandboxAdmin, consent_redirect, run_tag, start_authorization
from tests.states import client_secret_state
from tooling.devstack.consent import decide
from tooling.devstack.runs import wait_for_final, wait_for_form
from tooling.devstack.stack import LocalStack

pytestmark = pytest.mark.e2e


def outcome(page: httpx.Response) -> str:
    marker = 'data-outcome="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


@pytest.fixture
async def browser() -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client  # type: ignore[misc]


async def test_allow_completes_the_run_without_touching_prefect(
    prefect: PrefectClient,
    sandbox: SandboxAdmin,
    sandbox_blocks: LocalStack,
    browser: httpx.AsyncClient,
) -> None:
    run = await start_authorization("Receiver ERP")
    redirect = await consent_redirect(prefect, run)
    assert redirect.startswith(sandbox_blocks.callback_url)
    page = await browser.get(redirect)
    assert page.status_code == 200 and outcome(page) == "authorized"
    assert "Receiver ERP" in page.text
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed(), final.state
    assert len(await sandbox.instances(run_tag(run.id))) == 1
    # A replayed callback is told so, and changes nothing.
    replay = await browser.get(redirect)
    assert replay.status_code == 409 and outcome(replay) == "already-used"
    assert len(await sandbox.instances(run_tag(run.id))) == 1


async def test_deny_fails_the_run_with_the_refusal(
    prefect: PrefectClient, sandbox: SandboxAdmin, browser: httpx.AsyncClient
) -> None:
    run = await start_authorization("Receiver refused ERP")
    page = await browser.get(await consent_redirect(prefect, run, "deny"))
    assert page.status_code == 200 and outcome(page) == "refused"
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_failed()
    assert "access_denied" in (final.state.message or "")
    assert await sandbox.instances(run_tag(run.id)) == []


async def test_forged_and_malformed_callbacks_change_nothing(
    prefect: PrefectClient,
    sandbox: SandboxAdmin,
    sandbox_blocks: LocalStack,
    browser: httpx.AsyncClient,
) -> None:
    run = await start_authorization("Receiver forged ERP")
    redirect = await consent_redirect(prefect, run)
    code = httpx.URL(redirect).params["code"]
    state = httpx.URL(redirect).params["state"]
    callback = sandbox_blocks.callback_url
    app = sandbox_blocks.sandbox.config.oauth_apps[0]
    signer = (await StateSigningKey.aload(DEFAULT_STATE_KEY_BLOCK, client=prefect)).signer()
    attempts = {
        "altered": {
            "code": code,
            "state": state[:-4] + ("AAAA" if state[-4:] != "AAAA" else "BBBB"),
        },
        "client secret": {"code": code, "state": client_secret_state(run.id, app.client_secret)},
        "guessed key": {"code": code, "state": StateSigner("a-guessed-key-0123").sign(run.id)},
        "unknown run": {"code": code, "state": signer.sign(uuid4())},
        "no state": {"code": code},
        "both": {"code": code, "error": "access_denied", "state": state},
    }
    expected = {
        "altered": 400,
        "client secret": 400,
        "guessed key": 410,
        "unknown run": 404,
        "no state": 400,
        "both": 400,
    }
    for name, params in attempts.items():
        page = await browser.get(callback, params=params)
        assert page.status_code == expected[name], name
        assert code not in page.text
    waiting = await prefect.read_flow_run(run.id)
    assert waiting.state is not None and waiting.state.is_paused()
    # The genuine answer still works afterwards: nothing was consumed.
    page = await browser.get(redirect)
    assert outcome(page) == "authorized"
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed()
    assert len(await sandbox.instances(run_tag(run.id))) == 1


async def test_callbacks_for_runs_no_longer_waiting(
    prefect: PrefectClient, sandbox: SandboxAdmin, browser: httpx.AsyncClient
) -> None:
    expiring = await start_authorization("Receiver late ERP", authorization_timeout_minutes=0.05)
    late_redirect = await consent_redirect(prefect, expiring)
    await wait_for_final(prefect, expiring.id, timeout=60)
    page = await browser.get(late_redirect)
    assert page.status_code == 410 and outcome(page) == "expired"

    cancelled = await start_authorization("Receiver cancelled ERP")
    cancelled_redirect = await consent_redirect(prefect, cancelled)
    await prefect.set_flow_run_state(cancelled.id, Cancelled(), force=True)
    page = await browser.get(cancelled_redirect)
    assert page.status_code == 409 and outcome(page) == "ended"
    for run in (expiring, cancelled):
        assert await sandbox.instances(run_tag(run.id)) == []


async def test_an_answer_arriving_before_the_run_waits_is_not_lost(
    prefect: PrefectClient,
    sandbox: SandboxAdmin,
    sandbox_blocks: LocalStack,
    browser: httpx.AsyncClient,
) -> None:
    """The person answers at once (the link is in the log before the wait starts)."""
    app = sandbox_blocks.sandbox.config.oauth_apps[0]
    run = await start_authorization("Receiver quick ERP")
    signer = (await StateSigningKey.aload_or_create(client=prefect)).signer()
    state = signer.sign(run.id)
    link = (
        await browser.post(
            f"{sandbox_blocks.sandbox.api_base_url}/elements/infusionsofterp/oauth/url",
            json={
                "apiKey": app.client_id,
                "apiSecret": app.client_secret,
                "callbackUrl": sandbox_blocks.callback_url,
                "state": state,
            },
        )
    ).json()["oauthUrl"]
    redirect = await decide(link, client=browser)
    current = await prefect.read_flow_run(run.id)
    assert current.state is not None and not current.state.is_paused()
    page = await browser.get(redirect)
    assert outcome(page) == "authorized"
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed(), final.state
    assert len(await sandbox.instances(run_tag(run.id))) == 1


async def test_rotating_the_state_key_while_a_run_waits_still_completes_it(
    prefect: PrefectClient, sandbox: SandboxAdmin, browser: httpx.AsyncClient
) -> None:
    run = await start_authorization("Receiver rotated ERP")
    redirect = await consent_redirect(prefect, run)
    await StateSigningKey.arotate(client=prefect)
    page = await browser.get(redirect)
    assert page.status_code == 200 and outcome(page) == "authorized", page.text
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed(), final.state
    assert len(await sandbox.instances(run_tag(run.id))) == 1


async def test_manual_paste_keeps_working_next_to_the_receiver(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    from tooling.devstack.runs import resume_with_answer

    run = await start_authorization("Receiver paste ERP")
    redirect = await consent_redirect(prefect, run)
    await resume_with_answer(prefect, run.id, {"code": redirect})
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed()


async def test_health_and_logs_without_secrets(
    sandbox_blocks: LocalStack, browser: httpx.AsyncClient
) -> None:
    receiver = sandbox_blocks.receiver
    assert receiver is not None
    health = await browser.get(f"{receiver.url}/health")
    assert health.json() == {"status": "ok", "prefect": "ok"}
    await asyncio.sleep(0.5)
    log = receiver.process.log_path.read_text()
    assert "Resumed run" in log
    assert "code=" not in log and "state=" not in log


async def test_concurrent_form_wait(prefect: PrefectClient) -> None:
    run = await start_authorization("Receiver form ERP")
    _, description = await wait_for_form(prefect, run.id)
    assert "continue by itself" in description
    await prefect.set_flow_run_state(run.id, Cancelled(), force=True)


async def test_concurrent_first_uses_of_the_state_key_end_with_one_key(
    prefect: PrefectClient,
) -> None:
    """Against the real server: the losers of the save race load the winner's key."""
    name = f"state-key-{uuid4().hex[:8]}"
    keys = await asyncio.gather(
        *(StateSigningKey.aload_or_create(name, client=prefect) for _ in range(5))
    )
    assert len({key.current_key.get_secret_value() for key in keys}) == 1
    saved = await StateSigningKey.aload(name, client=prefect)
    assert saved.current_key == keys[0].current_key
    await StateSigningKey.adelete(name, client=prefect)
