"""`await_authorization` in a direct run: it pauses in process and checks each answer."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from blocks import StateSigningKey
from flows.authenticate import await_authorization
from flows.steps.consent import ConsentLink
from flows.steps.run_identity import current_flow_run
from flows.steps.waiting import claim_code
from open_connectors import (
    AuthorizationDeniedError,
    AuthorizationGrant,
    AuthorizationTimeoutError,
    InvalidAuthorizationAnswerError,
    StateMismatchError,
    code_digest,
    used_code_key,
)
from open_connectors.authorization import used_code_marker
from tests.unit.conftest import answer, run_answered, stored_answer

pytestmark = pytest.mark.usefixtures("prefect_harness", "fast_pause")

# Answers name the state with this placeholder; `answered` puts the signed state in.
STATE = "<the consent link's state>"
AUTHORIZATION = UUID("00000000-0000-4000-8000-00000000a11c")


async def consent_link() -> ConsentLink:
    """A consent link whose state is signed with the state key, as get_redirect_url signs it."""
    state = (await StateSigningKey.aload_or_create()).signer().sign(AUTHORIZATION)
    return ConsentLink(
        url=f"https://accounts.infusionsoft.com/app/oauth/authorize?state={state}",
        state=state,
        instance_name="Acme ERP",
        connector_name="Infusionsoft ERP",
    )


@flow
async def waiting_flow(consent: ConsentLink) -> dict[str, object]:
    """Wait for the answer as the authorization flows do; return what the grant says."""
    grant = await await_authorization(consent, 60)
    assert grant is not None, "a direct run pauses; it never suspends"
    return {"code": grant.code.get_secret_value(), "state_checked": grant.state_checked}


async def answered(*answers: dict[str, str]) -> tuple[object, dict[str, object]]:
    consent = await consent_link()
    signed = [
        {key: value.replace(STATE, consent.state) for key, value in given.items()}
        for given in answers
    ]
    name = f"wait-{uuid4().hex}"
    return await run_answered(waiting_flow.with_options(flow_run_name=name)(consent), name, signed)


async def test_an_approval_gives_the_grant_and_the_stored_answer_is_deleted() -> None:
    run_id, grant = await answered(answer(code="the-code", state=STATE))
    assert grant == {"code": "the-code", "state_checked": True}
    assert await stored_answer(run_id, "authorization-1") is None  # type: ignore[arg-type]


async def test_the_whole_redirect_address_is_read() -> None:
    redirect = f"https://auth.example.com/oauth?code=pasted-code&state={STATE}"
    _, grant = await answered(answer(code=redirect))
    assert grant == {"code": "pasted-code", "state_checked": True}


async def test_a_refusal_raises_with_the_provider_words() -> None:
    with pytest.raises(AuthorizationDeniedError) as caught:
        await answered(
            answer(error="access_denied", error_description="The user denied access.", state=STATE)
        )
    assert "access_denied" in str(caught.value)
    assert "The user denied access." in str(caught.value)


async def test_an_answer_with_another_state_is_refused() -> None:
    with pytest.raises(StateMismatchError, match="state does not match"):
        await answered(answer(code="the-code", state="someone-elses-state"))


async def test_an_empty_answer_shows_the_form_again_under_the_next_key() -> None:
    run_id, grant = await answered(answer(), answer(code="second-try", state=STATE))
    assert grant["code"] == "second-try"
    assert await stored_answer(run_id, "authorization-2") is None  # type: ignore[arg-type]


async def test_three_unusable_answers_end_the_wait() -> None:
    with pytest.raises(InvalidAuthorizationAnswerError, match="after 3 prompts"):
        await answered(answer(), answer(state=STATE), answer(error_description="no error"))


async def test_nobody_answering_ends_the_wait_with_a_clear_failure() -> None:
    @flow
    async def impatient(consent: ConsentLink) -> None:
        await await_authorization(consent, 1)

    with pytest.raises(AuthorizationTimeoutError, match="1 second"):
        await impatient(await consent_link())


async def test_a_bare_code_is_refused_with_words_to_paste_the_whole_address() -> None:
    with pytest.raises(InvalidAuthorizationAnswerError, match="WHOLE address"):
        await answered(answer(code="bare-1"), answer(code="bare-2"), answer(code="bare-3"))


@flow
async def opted_in_flow(consent: ConsentLink) -> dict[str, object]:
    """The wait of a run whose OAuth app block accepts bare codes."""
    grant = await await_authorization(consent, 60, accept_bare_code=True)
    assert grant is not None
    return {"code": grant.code.get_secret_value(), "state_checked": grant.state_checked}


async def test_a_bare_code_is_accepted_only_with_the_opt_in() -> None:
    consent = await consent_link()
    name = f"wait-{uuid4().hex}"
    _, grant = await run_answered(
        opted_in_flow.with_options(flow_run_name=name)(consent), name, [answer(code="bare")]
    )
    assert grant == {"code": "bare", "state_checked": False}


@flow
async def claiming_flow(consent: ConsentLink, recorded_for: str, claimed_for: str) -> bool:
    """The receiver records the code for one wait; the run then claims it for another."""
    signer = (await StateSigningKey.aload_or_create()).signer()
    run = current_flow_run()
    key = used_code_key(code_digest(signer, "the-code", state=consent.state))
    async with get_client() as client:
        await client.create_flow_run_input(run.id, key, used_code_marker(recorded_for))
    grant = AuthorizationGrant(code=SecretStr("the-code"), state_checked=True)
    return await claim_code(signer, grant, consent, claimed_for, run)


@pytest.mark.parametrize(
    ("claimed_for", "accepted"),
    [
        # A code recorded for one of a prompt's keys (its hot wait's, or its suspension's
        # when no hot slot was free) counts for that prompt under the other.
        ("suspended-authorization-1-response", True),
        ("paused-authorization-1-hot-response", True),
        # The form shown again is a later prompt: the same code is a replay there.
        ("suspended-authorization-2-response", False),
        ("paused-authorization-2-hot-response", False),
    ],
)
async def test_a_code_recorded_for_a_prompts_hot_wait_is_that_prompts_after_the_switch(
    claimed_for: str, accepted: bool
) -> None:
    consent = await consent_link()
    result = await claiming_flow(consent, "paused-authorization-1-hot-response", claimed_for)
    assert result is accepted
