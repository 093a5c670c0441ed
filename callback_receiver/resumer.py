"""Verify a callback's state, then resume the wait of its run with the answer, once.

Order of work for one callback (no step reads anything before the state verifies):

1. The state is verified with the state key (`SignerSource`): forged or altered →
   invalid; signed with a key rotated out → "this link has expired".
2. The run is read. Its state *type* and *details* decide, never Prefect's message
   text: a final run has ended (Failed right after a pause whose `pause_timeout`
   had passed: expired); a paused run with a `run_input_keyset` whose schema input
   is stored is waiting; anything else (Running between two waits, Scheduled
   "Resuming", Pending, the schema not stored yet) is looked at again shortly.
3. "Already used": the answer's code is remembered as a flow run input under
   `used_code_key(code_digest(...))` (a keyed digest, never the code). The marker is
   looked for first, then created right before the resume: the server's unique
   (flow run, key) makes the creation an atomic check-and-set, so of two identical
   callbacks only one resumes, and an old callback never resumes a later wait. If
   the resume is not accepted the marker is removed, so a reload can try again. If
   the resume fails without an answer (Prefect unreachable, a 503 after its client's
   retries, as SQLite gives under a burst), the marker is removed and the resume
   tried again at the next look only once the run is seen still waiting on the same
   prompt with no answer stored: an answer that may have arrived is never sent twice.
   A marker Prefect would not remove after a resume it did not take stays this
   callback's: when the run waits on the same prompt again (a resume that lands as
   the run moves between its waits is aborted), the callback reads it back and, finding exactly
   the value it wrote, resumes with it instead of calling its own code "used". Gone
   (the removal went through after all), it is made anew at the next look; another
   value, or another prompt: "already used", as any doubt is.

Polling backs off from `poll_initial_seconds` (0.25 s), doubling up to
`poll_max_seconds` (2 s), within `wait_seconds` (20 s by default). With the
defaults a callback looks at the run at most 14 times, so it makes at most
`max_prefect_requests(20) = 114` Prefect API requests: one marker look-up, one
state-history read for a run that has ended, and per look at most eight (the read,
the schema check, the marker creation, the resume, and after a resume that failed a
read, two answer look-ups and the marker's removal; a marker held after such a
removal failed is read back instead of created), plus at most one read of the
state key block per reload interval (5 s). A callback for
a run that already waits makes 5 (read, marker look-up, schema check, marker
creation, resume); one for a run that never waits makes 15 over 20 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from callback_receiver.outcomes import CallbackResult, Outcome
from callback_receiver.query import Callback
from callback_receiver.signing import SignerSource
from open_connectors.authorization import (
    code_digest,
    prompt_of,
    used_code_key,
    used_code_marker,
)
from open_connectors.errors import StateMismatchError, UnknownStateKeyError

logger = logging.getLogger("callback_receiver")

_FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
MARKER_SENDER = "open-connectors-callback-receiver"
Sleep = Callable[[float], Awaitable[None]]


def poll_delays(wait_seconds: float, initial: float = 0.25, cap: float = 2.0) -> list[float]:
    """The sleeps between two looks at a run within `wait_seconds`."""
    delays: list[float] = []
    total, delay = 0.0, initial
    while total < wait_seconds:
        step = min(delay, wait_seconds - total)
        delays.append(step)
        total += step
        delay = min(delay * 2, cap)
    return delays


def max_prefect_requests(wait_seconds: float, initial: float = 0.25, cap: float = 2.0) -> int:
    """The most Prefect API requests one callback makes (the state key block aside).

    One marker look-up and one state-history read; per look at the run at most
    eight: the read, the schema check, the marker creation (or the read of a marker
    held), the resume, and after a resume that failed, a read of the run, two
    look-ups of its answer and the marker's removal.
    """
    looks = len(poll_delays(wait_seconds, initial, cap)) + 1
    return 2 + 8 * looks


@dataclass(frozen=True)
class _HeldMarker:
    """This callback's marker, left after a resume Prefect did not take: its code is undelivered.

    Attributes:
        wait_key: The wait it was recorded for.
        value: The value written, which tells it from another callback's.
    """

    wait_key: str
    value: str


@dataclass(frozen=True)
class _LookAgain:
    """The answer was not delivered: look at the run again.

    Attributes:
        held: This callback's marker, when Prefect would not remove it.
    """

    held: _HeldMarker | None = None


class Resumer:
    """Resumes waiting authorization runs from verified callbacks.

    Args:
        client: A Prefect client of the server the runs live on.
        signers: Verifies states with the state key.
        wait_seconds: How long a callback may wait for its run to start waiting.
        poll_initial_seconds: The first pause between two looks at the run.
        poll_max_seconds: The longest pause between two looks.
        sleep: The sleep between looks (tests).
    """

    def __init__(
        self,
        client: PrefectClient,
        *,
        signers: SignerSource,
        wait_seconds: float = 20.0,
        poll_initial_seconds: float = 0.25,
        poll_max_seconds: float = 2.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._signers = signers
        self._wait_seconds = wait_seconds
        self._poll_initial = poll_initial_seconds
        self._poll_max = poll_max_seconds
        self._sleep = sleep

    async def prefect_is_healthy(self) -> bool:
        """Whether the Prefect API answers its health check."""
        return (await self._client.api_healthcheck()) is None

    async def handle(self, callback: Callback) -> CallbackResult:
        """Verify the callback, resume its run's wait once, and say what happened."""
        try:
            run_id, signer = await self._signers.verify(callback.state)
        except UnknownStateKeyError:
            logger.info("Refused a callback signed with a state key rotated out.")
            return CallbackResult(Outcome.KEY_RETIRED)
        except StateMismatchError:
            logger.warning("Refused a callback whose state does not verify.")
            return CallbackResult(Outcome.INVALID, detail="its state does not verify")
        run = await self._read_run(run_id)
        if run is None:
            return CallbackResult(Outcome.UNKNOWN)
        instance_name = str((run.parameters or {}).get("instance_name") or "") or None
        result = CallbackResult(Outcome.INVALID, instance_name, str(run_id))
        marker = used_code_key(code_digest(signer, callback.used_value(), state=callback.state))
        if await self._input_exists(run_id, marker):
            logger.info("Run %s already received this answer.", run_id)
            return _with(result, Outcome.ALREADY_USED)
        outcome = await self._resume_when_waiting(run, callback, marker)
        return _with(result, outcome)

    async def _resume_when_waiting(self, run: FlowRun, callback: Callback, marker: str) -> Outcome:
        delays = iter(poll_delays(self._wait_seconds, self._poll_initial, self._poll_max))
        ready_schema: str | None = None
        held: _HeldMarker | None = None
        while True:
            state = run.state
            if state is None:
                return Outcome.UNKNOWN
            if state.type in _FINAL:
                return await self._ended_outcome(run.id, state)
            keyset = state.state_details.run_input_keyset if state.is_paused() else None
            if keyset and "schema" in keyset:
                if ready_schema != keyset["schema"] and await self._input_exists(
                    run.id, keyset["schema"]
                ):
                    ready_schema = keyset["schema"]
                if ready_schema == keyset["schema"]:
                    wait_key = keyset.get("response", keyset["schema"])
                    result = await self._resume_once(run.id, callback, marker, wait_key, held)
                    if not isinstance(result, _LookAgain):
                        return result
                    held = result.held
            # Between two waits, early, or the form not stored yet: look again.
            delay = next(delays, None)
            if delay is None:
                logger.info("Run %s was not waiting within %.0f s.", run.id, self._wait_seconds)
                return Outcome.NOT_READY
            await self._sleep(delay)
            current = await self._read_run(run.id)
            if current is None:
                return Outcome.UNKNOWN
            run = current

    async def _resume_once(
        self,
        run_id: UUID,
        callback: Callback,
        marker: str,
        wait_key: str,
        held: _HeldMarker | None,
    ) -> Outcome | _LookAgain:
        """Mark the answer used and resume; `_LookAgain` when the run should be looked at again.

        Args:
            held: This callback's marker that Prefect would not remove after an earlier
                resume it did not take; resumed with when it is still there as written
                and the run waits on the same prompt.
        """
        if held is None:
            value = await self._create_marker(run_id, marker, wait_key)
            if value is None:
                logger.info("Run %s already received this answer.", run_id)
                return Outcome.ALREADY_USED
            held = _HeldMarker(wait_key, value)
        else:
            found = await self._read_input(run_id, marker)
            if found is None:
                return _LookAgain()  # removed after all: made anew at the next look
            if found != held.value or prompt_of(held.wait_key) != prompt_of(wait_key):
                # Another callback's record, or the run moved on (the flow may have
                # taken this code from the form meanwhile): any doubt is "used".
                logger.info("Run %s already received this answer.", run_id)
                return Outcome.ALREADY_USED
        try:
            answer = await self._client.resume_flow_run(run_id, run_input=callback.run_input())
        except (httpx.HTTPError, OSError):
            # Taken or not? Only a run seen still waiting on this prompt with no answer
            # stored proves "not": then the code is freed and the resume tried again
            # within the callback's wait; any doubt keeps the marker (never sent twice).
            if not await self._still_unanswered(run_id, wait_key):
                raise
            logger.info("Prefect did not take the answer for run %s; trying again.", run_id)
            return await self._free_marker(run_id, marker, held)
        if answer.status == SetStateStatus.ACCEPT:
            outcome = Outcome.REFUSED if callback.error else Outcome.AUTHORIZED
            logger.info("Resumed run %s (%s).", run_id, outcome.value)
            return outcome
        freed = await self._free_marker(run_id, marker, held)
        if answer.status == SetStateStatus.REJECT:
            if answer.state is not None and answer.state.type == StateType.FAILED:
                return Outcome.EXPIRED
            if answer.state is not None and answer.state.type == StateType.PAUSED:
                reason = str(getattr(answer.details, "reason", "") or "")
                logger.warning("Run %s refused the answer: %s", run_id, reason[:200])
                return Outcome.INVALID
        # ABORT (no longer paused: another answer won, or the wait is changing): look again.
        return freed

    async def _free_marker(self, run_id: UUID, marker: str, held: _HeldMarker) -> _LookAgain:
        """Remove the marker of an answer the run did not take; held when Prefect would not."""
        removed = await self._delete_marker(run_id, marker)
        return _LookAgain(None if removed else held)

    async def _still_unanswered(self, run_id: UUID, wait_key: str) -> bool:
        """Whether the run certainly did not take an answer for `wait_key` (after a failed resume).

        True only when the run is read as still paused on the same prompt (under either of
        its keys: its hot wait's or its suspension's) with no answer stored under either
        key; any doubt (another state or prompt, a stored answer,
        Prefect not answering) is False.
        """
        try:
            run = await self._client.read_flow_run(run_id)
            state = run.state
            keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
            current = keyset.get("response") if keyset else None
            if current is None or prompt_of(current) != prompt_of(wait_key):
                return False
            for key in {wait_key, current}:
                if await self._input_exists(run_id, key):
                    return False
            return True
        except (httpx.HTTPError, OSError, ObjectNotFound):
            return False

    async def _ended_outcome(self, run_id: UUID, final: State) -> Outcome:
        """Expired when the run failed right after a wait whose deadline had passed."""
        if final.type != StateType.FAILED:
            return Outcome.ENDED
        history = sorted(await self._client.read_flow_run_states(run_id), key=_timestamp)
        earlier = [state for state in history if _timestamp(state) < _timestamp(final)]
        if earlier and earlier[-1].type == StateType.PAUSED:
            deadline = earlier[-1].state_details.pause_timeout
            if deadline is not None and _timestamp(final) >= _as_datetime(deadline):
                return Outcome.EXPIRED
        return Outcome.ENDED

    async def _input_exists(self, run_id: UUID, key: str) -> bool:
        return await self._read_input(run_id, key) is not None

    async def _read_input(self, run_id: UUID, key: str) -> str | None:
        """The run input stored under `key`; None when there is none."""
        try:
            return await self._client.read_flow_run_input(run_id, key)
        except ObjectNotFound:
            return None
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise

    async def _create_marker(self, run_id: UUID, marker: str, wait_key: str) -> str | None:
        """Record the answer as used and return the value written; None when it already was."""
        value = used_code_marker(wait_key)
        try:
            await self._client.create_flow_run_input(
                run_id, marker, value=value, sender=MARKER_SENDER
            )
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 409:
                return None
            raise
        return value

    async def _delete_marker(self, run_id: UUID, marker: str) -> bool:
        """Remove this callback's marker; False when Prefect would not."""
        try:
            await self._client.delete_flow_run_input(run_id, marker)
        except ObjectNotFound:
            return True
        except (httpx.HTTPError, OSError) as exc:
            if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code == 404:
                return True  # a retry of a removal that went through
            # The callback holds the marker and may resume with it (see `_resume_once`);
            # a reload meanwhile is told "already used".
            logger.warning(
                "Could not remove a used-answer marker of run %s: %s.", run_id, type(exc).__name__
            )
            return False
        return True

    async def _read_run(self, run_id: UUID) -> FlowRun | None:
        try:
            return await self._client.read_flow_run(run_id)
        except ObjectNotFound:
            return None
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise


def _as_datetime(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _timestamp(state: State) -> datetime:
    return _as_datetime(state.timestamp)


def _with(result: CallbackResult, outcome: Outcome) -> CallbackResult:
    return CallbackResult(
        outcome=outcome,
        instance_name=result.instance_name,
        flow_run_id=result.flow_run_id,
        detail="the run refused the answer" if outcome is Outcome.INVALID else None,
    )
