"""Waiting for the person's answer: suspend or pause the run, read the answer, forget it.

Started from a deployment, the run suspends (no process held; Prefect runs the flow
again from the top after the resume, and the same suspension key then hands back the
stored answer), but its process first watches the suspension for a short window and
goes on itself when the answer comes within it (`flows.steps.hot_wait`). Started
directly, it pauses in its process. An empty or malformed answer shows the form
again, under the next key, at most `MAX_PROMPTS` times. The stored answer is deleted
once read: Prefect keeps run input in clear.
Each prompt that starts a wait emits `open-connectors.consent.requested` with the link.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.exceptions import FlowPauseTimeout, PrefectHTTPStatusError
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.input import adelete_flow_run_input
from prefect.logging.loggers import flow_run_logger
from prefect.utilities.urls import url_for

from blocks.prefect_client import prefect_client
from flows.steps.consent import AuthorizationAnswer, ConsentLink, consent_description
from flows.steps.events import CONSENT_REQUESTED, emit_consent_event
from flows.steps.hot_wait import (
    HandedBack,
    HotWaitSettings,
    end_process,
    hot_waits_supported,
    stored_hot_answer,
    wait_hot,
)
from flows.steps.run_identity import current_flow_run
from flows.steps.run_state_key import run_state_key
from open_connectors import (
    AuthorizationGrant,
    AuthorizationTimeoutError,
    InvalidAuthorizationAnswerError,
    StateSigner,
    read_authorization_answer,
)
from open_connectors.authorization import (
    HOT_WAIT_SUFFIX,
    code_digest,
    marker_is_for_wait,
    used_code_key,
    used_code_marker,
)

PAUSE_KEY_PREFIX = "authorization"
# Prefect stores a wait's answer as "<paused|suspended>-<key>-response" (keyset_from_paused_state).
ANSWER_KEY_SUFFIX = "-response"
MAX_PROMPTS = 3
DIRECT_RUN_POLL_SECONDS = 2


async def wait_for_answer(
    consent: ConsentLink, timeout_seconds: int, *, accept_bare_code: bool = False
) -> AuthorizationGrant | None:
    """Wait for the answer to `consent` and check it; None when the run is suspending.

    The answer must carry this run's state (checked with the state key, whose
    previous keys still verify the runs that waited across a rotation), unless
    `accept_bare_code`. A code this run already received (a replayed callback, a
    reloaded page, a code pasted twice) is refused and the form shown again.

    Raises:
        AuthorizationDeniedError: The person refused.
        StateMismatchError: The answer belongs to another authorization.
        AuthorizationTimeoutError: Nobody answered in time (direct runs).
        InvalidAuthorizationAnswerError: No usable answer after `MAX_PROMPTS` prompts.
    """
    logger = get_run_logger()
    run = current_flow_run()
    signer = (await run_state_key()).signer()
    suspend = run.deployment_id is not None and run.parent_task_run_id is None
    hot = HotWaitSettings()
    if suspend and hot.seconds > 0 and not hot_waits_supported():
        logger.warning(
            "This Prefect version cannot end a waiting run's process without a state change: "
            "hot waits are off, the run suspends at once."
        )
    # Keys that fired in an earlier process of this run (before a suspension).
    fired = set(run.empirical_policy.pause_keys or ())
    problem: str | None = None
    for prompt in range(1, MAX_PROMPTS + 1):
        key = f"{PAUSE_KEY_PREFIX}-{prompt}"
        hot_key = f"{key}{HOT_WAIT_SUFFIX}"
        expires_at = datetime.now(UTC) + timedelta(seconds=timeout_seconds)
        form = AuthorizationAnswer.with_initial_data(
            description=consent_description(
                consent, expires_at=expires_at, previous_problem=problem
            )
        )
        if suspend and hot_key in fired and key not in fired:
            # This prompt's wait began hot, in an earlier process of this run (which
            # ended before the answer, or whose answer was unusable and the form shown
            # again): hand back what it received, as Prefect does for a fired
            # suspension, and never wait on it a second time.
            answer = await stored_hot_answer(form, run=run, key=hot_key)
        elif suspend:
            answer = None
            announced = False
            started = time.monotonic()
            if hot.enabled and key not in fired and hot_key not in fired:
                announce_waiting(consent, run, expires_at)
                announced = True
                window = min(hot.seconds, timeout_seconds)
                waited = await wait_hot(
                    form,
                    run=run,
                    key=hot_key,
                    window=window,
                    timeout=timeout_seconds,
                    settings=hot,
                )
                if isinstance(waited, HandedBack):
                    end_process(waited, run)
                    if waited.suspended and not waited.explained:
                        _log_suspended(expires_at)
                    elif not waited.suspended:
                        logger.info("The run ended while it waited (%s).", waited.state.type.value)
                    return None
                answer = waited
            if answer is None:
                left = timeout_seconds - (time.monotonic() - started)
                answer = await asuspend_flow_run(
                    wait_for_input=form, flow_run_id=run.id, key=key, timeout=max(1, round(left))
                )
            if answer is None:
                # Announced here, not before the call: after the resume the flow runs
                # again and this call hands back the answer instead of waiting, so the
                # announcement would otherwise go out twice for one prompt (and once
                # only when the run waited hot first).
                if not announced:
                    announce_waiting(consent, run, expires_at)
                _log_suspended(expires_at)
                return None
        else:
            announce_waiting(consent, run, expires_at)
            logger.info(
                "Waiting for the authorization until %s UTC (paused in this process).",
                f"{expires_at:%Y-%m-%d %H:%M}",
            )
            try:
                answer = await apause_flow_run(
                    wait_for_input=form,
                    timeout=timeout_seconds,
                    poll_interval=DIRECT_RUN_POLL_SECONDS,
                    key=key,
                )
            except FlowPauseTimeout:
                raise AuthorizationTimeoutError(
                    f"Nobody answered the consent request within {_duration(timeout_seconds)}; "
                    "the link has expired and no instance was created. Start a new run."
                ) from None
        await _forget_answer(answer, run)
        if answer.is_empty():
            problem = "no answer was given (an empty form, or an answer already used)."
            logger.warning("The answer was empty; showing the form again.")
            continue
        try:
            grant = read_authorization_answer(
                expected_state=consent.state,
                signer=signer,
                allow_bare_code=accept_bare_code,
                code=answer.code,
                state=answer.state,
                error=answer.error,
                error_description=answer.error_description,
            )
        except InvalidAuthorizationAnswerError as exc:
            problem = str(exc)
            logger.warning("The answer could not be used (%s); showing the form again.", exc)
            continue
        if not await claim_code(signer, grant, consent, answer.metadata.key, run):
            problem = (
                "this code was already used for this authorization (a replayed or reloaded "
                "answer). Open the consent link again, approve, and paste the new address."
            )
            logger.warning("The answer's code was already used; showing the form again.")
            continue
        logger.info(
            "Authorization received%s.",
            "" if grant.state_checked else " (a bare code, accepted without a state to check)",
        )
        return grant
    raise InvalidAuthorizationAnswerError(
        f"No usable answer after {MAX_PROMPTS} prompts (last problem: {problem}) Start a new run."
    )


async def claim_code(
    signer: StateSigner,
    grant: AuthorizationGrant,
    consent: ConsentLink,
    wait_key: str,
    run: FlowRun,
) -> bool:
    """Record on the run that its code was received; False when it was, for another wait.

    The record is keyed by an HMAC of the code (never the code itself), in the same
    scheme as the callback receiver's, so the server's unique (run, key) makes it an
    atomic check between the receiver and the run: the receiver records the code for
    the wait it resumes, and this wait accepts that record as its own.
    """
    key = used_code_key(code_digest(signer, grant.code.get_secret_value(), state=consent.state))
    async with prefect_client() as client:
        try:
            await client.create_flow_run_input(
                run.id, key, used_code_marker(wait_key), sender="authorization-flow"
            )
            return True
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 409:
                raise
        recorded = await client.read_flow_run_input(run.id, key)
    return marker_is_for_wait(recorded, wait_key)


def announce_waiting(consent: ConsentLink, run: FlowRun, expires_at: datetime) -> None:
    """Emit `open-connectors.consent.requested`: the link, for automations to deliver."""
    emit_consent_event(
        CONSENT_REQUESTED,
        flow_run_id=str(run.id),
        instance_name=consent.instance_name,
        connector=consent.connector_name,
        element_key=consent.element_key,
        block_name=consent.instance_block,
        link=consent.url,
        expires_at=expires_at,
        flow_run_url=url_for(run),
    )


async def _forget_answer(answer: AuthorizationAnswer, run: FlowRun) -> None:
    """Delete the stored answer: Prefect keeps run input in plain text."""
    if answer.metadata.key:
        try:
            await adelete_flow_run_input(answer.metadata.key, flow_run_id=run.id)
        except Exception as exc:  # never lose the authorization over the clean-up
            get_run_logger().warning(
                "Could not delete the stored answer %r: %s", answer.metadata.key, type(exc).__name__
            )


async def forget_unread_answers(flow: Any, flow_run: FlowRun, state: State) -> None:
    """A hook for runs that end before reading their answer: delete the stored answers.

    A suspended run that is resumed with an answer runs again from the top, and may fail
    (a block name taken meanwhile, a platform refusal) or be cancelled before it reads
    the answer; Prefect would then keep the authorization code in plain text as the
    run's input. Prefect runs this just after it records the final state, so the
    answer outlives the run by the few requests this takes. Markers and schemas hold
    no secret and stay.
    """
    async with get_client() as client:
        try:
            for state_name in ("paused", "suspended"):
                stored = await client.filter_flow_run_input(
                    flow_run.id,
                    key_prefix=f"{state_name}-{PAUSE_KEY_PREFIX}-",
                    limit=100,
                    exclude_keys=set(),
                )
                for item in stored:
                    if item.key.endswith(ANSWER_KEY_SUFFIX):
                        await client.delete_flow_run_input(flow_run.id, item.key)
        except Exception as exc:  # the run's own outcome stands; say what was left
            flow_run_logger(flow_run, flow).warning(
                "Could not delete the run's unread answers: %s", type(exc).__name__
            )


def _log_suspended(expires_at: datetime) -> None:
    get_run_logger().info(
        "Waiting for the authorization until %s UTC. The run is suspended: no process is "
        "held while it waits.",
        f"{expires_at:%Y-%m-%d %H:%M}",
    )


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour(s)"
    if seconds % 60 == 0:
        return f"{seconds // 60} minute(s)"
    return f"{seconds} second(s)"
