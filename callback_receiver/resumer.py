"""Find the run a callback belongs to, check its state, and resume it with the answer.

The `state` names the flow run and carries an HMAC of its id under the OAuth app's
secret (`open_connectors.authorization`). A state that does not verify never leads
to a resume, so forged or altered callbacks change nothing. A run answers once:
after the resume it is no longer waiting, so a replayed callback is told "already
used". A callback that arrives while the run is still entering its wait (the
person was quick, or Prefect is still storing the form) waits briefly instead of
being refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from pydantic import SecretStr

from blocks import OAuthAppCredentials
from callback_receiver.outcomes import CallbackResult, Outcome
from callback_receiver.query import Callback
from flows.request import DEFAULT_OAUTH_APP_BLOCK
from open_connectors import authorization_id_from_state, derive_state
from open_connectors.authorization import state_matches

logger = logging.getLogger("callback_receiver")

_POLL_SECONDS = 0.25
_FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
# Prefect's words for a pause that ran out of time (server service or resume check).
_EXPIRY_MARKERS = ("never resumed", "can no longer resume", "has timed out")

SecretLoader = Callable[[str], Awaitable[SecretStr | None]]


class Resumer:
    """Resumes waiting authorization runs from verified callbacks.

    Args:
        client: A Prefect client of the server the runs live on.
        wait_seconds: How long a callback may wait for its run to start waiting.
        load_app_secret: Returns the secret of an OAuth app block by name (None when the
            block is missing); by default it loads the `OAuthAppCredentials` block.
    """

    def __init__(
        self,
        client: PrefectClient,
        *,
        wait_seconds: float = 20.0,
        load_app_secret: SecretLoader | None = None,
    ) -> None:
        self._client = client
        self._wait_seconds = wait_seconds
        self._load_app_secret = load_app_secret or self._app_secret_from_block

    async def prefect_is_healthy(self) -> bool:
        """Whether the Prefect API answers its health check."""
        return (await self._client.api_healthcheck()) is None

    async def handle(self, callback: Callback) -> CallbackResult:
        """Verify the callback, resume its run if it waits, and say what happened."""
        run_id = authorization_id_from_state(callback.state)
        if run_id is None:
            return CallbackResult(Outcome.INVALID, detail="its state is not one we issue")
        run = await self._read_run(run_id)
        if run is None:
            return CallbackResult(Outcome.UNKNOWN)
        parameters = run.parameters or {}
        instance_name = str(parameters.get("instance_name") or "") or None
        result = CallbackResult(Outcome.INVALID, instance_name, str(run_id))
        if not await self._state_verifies(run, callback.state):
            logger.warning("Refused a callback whose state does not verify for run %s.", run_id)
            return _with(result, Outcome.INVALID, detail="its state does not verify")
        return await self._resume_when_waiting(run_id, callback, result)

    async def _resume_when_waiting(
        self, run_id: UUID, callback: Callback, result: CallbackResult
    ) -> CallbackResult:
        deadline = time.monotonic() + self._wait_seconds
        while True:
            run = await self._read_run(run_id)
            if run is None or run.state is None:
                return _with(result, Outcome.UNKNOWN)
            state = run.state
            if state.type in _FINAL:
                return _with(result, _ended_outcome(run))
            if state.is_paused() and state.state_details.run_input_keyset:
                answer = await self._client.resume_flow_run(run_id, run_input=callback.run_input())
                reason = str(getattr(answer.details, "reason", "") or "")
                if answer.status == SetStateStatus.ACCEPT:
                    outcome = Outcome.REFUSED if callback.error else Outcome.AUTHORIZED
                    logger.info("Resumed run %s (%s).", run_id, outcome.value)
                    return _with(result, outcome)
                if answer.status == SetStateStatus.REJECT:
                    if answer.state is not None and answer.state.type == StateType.FAILED:
                        return _with(result, Outcome.EXPIRED)
                    if "schema not found" not in reason:
                        logger.warning("Run %s refused the answer: %s", run_id, reason[:200])
                        return _with(result, Outcome.INVALID, detail="the run refused the answer")
                # The form is still being stored, or another callback won the race:
                # look again.
            elif _already_answered(run):
                return _with(result, Outcome.ALREADY_USED)
            if time.monotonic() >= deadline:
                logger.info("Run %s was not waiting within %.0f s.", run_id, self._wait_seconds)
                return _with(result, Outcome.NOT_READY)
            await asyncio.sleep(_POLL_SECONDS)

    async def _state_verifies(self, run: FlowRun, state: str) -> bool:
        block_name = str((run.parameters or {}).get("oauth_app_block") or DEFAULT_OAUTH_APP_BLOCK)
        secret = await self._load_app_secret(block_name)
        if secret is None:
            logger.warning("Run %s names an OAuth app block that cannot be loaded.", run.id)
            return False
        return state_matches(state, derive_state(run.id, secret))

    async def _app_secret_from_block(self, block_name: str) -> SecretStr | None:
        try:
            app = await OAuthAppCredentials.aload(block_name, client=self._client)
        except (ValueError, ObjectNotFound):
            return None
        return app.api_secret

    async def _read_run(self, run_id: UUID) -> FlowRun | None:
        try:
            return await self._client.read_flow_run(run_id)
        except ObjectNotFound:
            return None
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise


def _already_answered(run: FlowRun) -> bool:
    """A run that is not waiting but has waited before got its answer already."""
    policy = run.empirical_policy
    state = run.state
    resuming = state is not None and state.type == StateType.SCHEDULED and state.name == "Resuming"
    return bool(policy.pause_keys) or bool(policy.resuming) or resuming


def _ended_outcome(run: FlowRun) -> Outcome:
    state = run.state
    assert state is not None
    message = (state.message or "").lower()
    if state.type == StateType.FAILED and any(marker in message for marker in _EXPIRY_MARKERS):
        return Outcome.EXPIRED
    if state.type == StateType.COMPLETED:
        return Outcome.ALREADY_USED
    return Outcome.ENDED


def _with(result: CallbackResult, outcome: Outcome, **changes: Any) -> CallbackResult:
    return CallbackResult(
        outcome=outcome,
        instance_name=changes.get("instance_name", result.instance_name),
        flow_run_id=result.flow_run_id,
        detail=changes.get("detail", result.detail),
    )
