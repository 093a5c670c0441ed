"""The hot wait: the first minutes of a wait spent in the run's own process.

An answer is most likely in the minutes after the link is shown. A suspended run
needs a new flow-run process once answered (seconds of a new interpreter importing
Prefect); a run that waits in its own process goes on at once. So a run started
from a deployment first waits in its process for `OC_HOT_WAIT_SECONDS`, then lets
that process end, and waits on for the rest of its time holding nothing.

On the server the run is suspended from the start: its wait is a pause that Prefect
reschedules when it is resumed (`Paused` with `pause_reschedule`, under the key
`<prompt>-hot`), exactly what a suspension is. The process only watches it: it follows
its own state on Prefect's event stream (`prefect.flow-run.*` events of the run, the
websocket Prefect's own clients use, on a server and on Prefect Cloud), so a resume
wakes it at once, and it also reads its state now and then, in case an event is lost:
every `STREAM_BACKSTOP_SECONDS` while the stream is connected, every
`OC_HOT_WAIT_POLL_SECONDS` while it is not. Once resumed (Prefect schedules the run
again) the process takes the run back the way a runner or worker takes a scheduled
run: it proposes Pending, which Prefect accepts for one of them only, then Running,
and goes on with the answer. Should a runner or worker take it first, that one runs
the flow again from the top and finds the answer stored under the hot key; this
process ends without touching the run.

So nothing has to change when the window ends, and nothing is lost when the process
ends early: the window's end, a serving process or worker that stops (SIGTERM), a
killed container, a lost machine, Prefect's API failing while the process watches, a
worker or serving process killed alone (its runs' processes, orphaned, end by themselves
within `SUPERVISION_CHECK_SECONDS` rather than complete a run nobody supervises;
`flows.steps.supervision`).
The run stays suspended, and the answer resumes it on whichever serving process or
worker is up then. Until the run is taken back, a SIGTERM ends the wait quietly,
instead of Prefect's crash report that would end the run. (Only Prefect's runner
itself, alive while the run's process alone is killed, reports the run Crashed.)
A process that sees the run taken over by another (waiting again under a later
prompt) ends as well, rather than claim that prompt's resume.

Hot waits are bounded by the Prefect global concurrency limit
`open-connectors-hot-waits` (`OC_HOT_WAIT_LIMIT` slots when the flow creates it;
change it in the Prefect UI under Concurrency): beyond it a run suspends at once,
so any number of waiting authorizations holds at most that many processes. Slots
are leases: given back when the wait ends, or when the lease (the window plus a
minute) runs out for a process that died (`flows.steps.hot_slots`).

A serving process that is stopped asks its hot waits to end first
(`HOT_WAIT_END_REQUESTED`, an event on the run, delivered by the stream the wait
already follows; `deployments.hand_over`): otherwise Prefect's runner would cancel
every run it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import anyio
from prefect import get_run_logger
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.exceptions import Abort, PrefectHTTPStatusError
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_paused_state
from prefect.logging import get_logger
from prefect.states import Paused, Pending, Running
from prefect.utilities.engine import propose_state
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from blocks.prefect_client import prefect_client
from flows.steps.hot_slots import HOT_WAIT_LIMIT, HotSlot, ensure_hot_wait_limit, hot_slot
from flows.steps.supervision import (
    SUPERVISION_CHECK_SECONDS,
    Supervision,
    silence_unread_output,
)
from open_connectors import RunEndedWhileWaitingError

try:  # Prefect's own way to end a run's process leaving its state as is; private, may move
    from prefect._flow_run_suspension import (
        mark_flow_run_suspension_requested as _mark_suspension_requested,
    )
except ImportError:  # such a Prefect release: runs suspend at once (`hot_waits_supported`)
    _mark_suspension_requested = None  # type: ignore[assignment]

# Emitted on a run (`prefect.flow-run.<id>`) to end its hot wait now: its process ends.
HOT_WAIT_END_REQUESTED = "open-connectors.hot-wait.end-requested"
# How long a hot wait leaves a cancel to the runner before it stops by itself.
CANCEL_PATIENCE_SECONDS = 60.0
# A slot's lease outlives the window by this much: a process that died gives it back then.
LEASE_MARGIN_SECONDS = 60.0
# Prefect announces a state change before its API shows it (the event is sent before
# the transaction commits): after an event, the run reads its state again this often,
# this many times, before it falls back to the poll interval.
RECHECK_SECONDS = 0.05
RECHECKS = 10
# While the event stream is connected, reads of the state are only a backstop for a
# lost event: a resume wakes the run through the stream at once.
STREAM_BACKSTOP_SECONDS = 15.0
# States a run passes through before it waits, and its heartbeats: the stream first
# replays the last minute, and these never end a wait. A resume is `Resuming`.
_NOT_AN_END_OF_WAIT = ("heartbeat", "Scheduled", "Late", "Paused")

R = TypeVar("R", bound=RunInput)


class HotWaitSettings(BaseSettings):
    """How runs wait hot; from `OC_HOT_WAIT_*` environment variables of the flow-run process.

    Attributes:
        seconds: The hot window; 0 turns hot waits off (runs suspend at once).
        limit: Hot waits at once, when the flow creates the concurrency limit.
        poll_seconds: How often a hot run reads its state while Prefect's event stream is
            unavailable (while it is connected, every `STREAM_BACKSTOP_SECONDS`).
    """

    model_config = SettingsConfigDict(env_prefix="OC_HOT_WAIT_", extra="ignore")

    seconds: float = Field(default=180.0, ge=0, le=3600)
    limit: int = Field(default=4, ge=1, le=1000)
    poll_seconds: float = Field(default=1.0, gt=0, le=60)

    @property
    def enabled(self) -> bool:
        """Whether runs wait hot at all: a window, on a Prefect that supports it."""
        return self.seconds > 0 and hot_waits_supported()


def hot_waits_supported() -> bool:
    """Whether this Prefect can end a waiting run's process without a state change.

    The hot wait relies on a private Prefect function for it. A Prefect release that
    moves it turns hot waits off (runs suspend at once, as with `OC_HOT_WAIT_SECONDS=0`)
    instead of breaking every authorization.
    """
    return _mark_suspension_requested is not None


@dataclass(frozen=True)
class HandedBack:
    """The hot wait ended without an answer for this process, which ends here.

    The process must end without changing the run's state (`end_process`): a run
    still suspended is resumed by the answer on whichever serving process or worker is
    up then; a run cancelled (or expired) meanwhile stays so.

    Attributes:
        state: The run's state as this process last saw it.
        explained: The wait said in the run's log where the run goes on (a resumed run
            this process did not take).
    """

    state: State
    explained: bool = False

    @property
    def suspended(self) -> bool:
        """Whether the run still waits (suspended), rather than ended."""
        return self.state.is_paused()


async def wait_hot(
    form: type[R],
    *,
    run: FlowRun,
    key: str,
    window: float,
    timeout: float,
    settings: HotWaitSettings,
) -> R | HandedBack | None:
    """Wait in this process for at most `window` seconds, suspended on the server for `timeout`.

    Returns:
        The answer, with the run Running again in this process; `HandedBack` when this
        process ends without it (no answer in time, a runner took the answered run first,
        the process is stopping, the run was cancelled); None when no hot slot was free
        (nothing was changed: the caller suspends the run).
    """
    logger = get_run_logger()
    # Its requests (slot, pause, claim of the resumed run) are asked again soon when
    # Prefect's database is busy: the person waits on them.
    async with prefect_client() as client:
        if await ensure_hot_wait_limit(client, settings.limit) < 1:
            # Zero slots is how an operator turns hot waits off in the UI; the server
            # would refuse a request for a slot of it as invalid.
            logger.info("The hot-wait limit %s has 0 slots: the run suspends now.", HOT_WAIT_LIMIT)
            return None
        async with hot_slot(client, window + LEASE_MARGIN_SECONDS) as slot:
            if slot is None:
                return None
            logger.info(
                "Waiting for the authorization in this process for %.0f s (the run is "
                "suspended meanwhile: an answer after that resumes it in a new process).",
                window,
            )
            return await _wait_suspended_in_process(
                form,
                client=client,
                run=run,
                key=key,
                window=window,
                timeout=timeout,
                settings=settings,
                slot=slot,
            )


async def stored_hot_answer(form: type[R], *, run: FlowRun, key: str) -> R:
    """What the hot wait `key` of this run received (empty once it was read and deleted).

    For the run's next process after its hot wait ended (the window's end, a stop, a
    process lost): the answer resumed the run, and it runs again from the top. The same
    form is never shown twice, as Prefect hands back the input of a suspension that
    already fired.
    """
    return await form.aload(_hot_keyset(key), flow_run_id=run.id)


def end_process(left: HandedBack, run: FlowRun) -> None:
    """Have Prefect end this process at the flow's next step, leaving the run's state as is.

    Prefect's own way for a suspension made from inside the run (`asuspend_flow_run`
    with a `flow_run_id`): its engine then ends the process without proposing a state.
    """
    if _mark_suspension_requested is None:  # never: `wait_hot` runs only when supported
        raise RuntimeError("This Prefect cannot end a process without a state change.")
    _mark_suspension_requested(run.id, left.state)


def _hot_keyset(key: str) -> dict[str, str]:
    """The run input keys of the hot wait `key` (Prefect's naming for a Paused state)."""
    return keyset_from_paused_state(Paused(pause_key=key))


async def _wait_suspended_in_process(
    form: type[R],
    *,
    client: PrefectClient,
    run: FlowRun,
    key: str,
    window: float,
    timeout: float,
    settings: HotWaitSettings,
    slot: HotSlot,
) -> R | HandedBack:
    proposed = Paused(timeout_seconds=max(1, round(timeout)), reschedule=True, pause_key=key)
    keyset = _hot_keyset(key)
    proposed.state_details.run_input_keyset = keyset
    with _sigterm_ends() as sigterm:
        state = await propose_state(client=client, state=proposed, flow_run_id=run.id)
        if state.is_running():
            # This pause fired before and was answered: hand the stored answer back.
            return await form.aload(keyset, flow_run_id=run.id)
        if not state.is_paused():
            raise RunEndedWhileWaitingError(f"The run could not wait: it is {state.type.value}.")
        suspension = HandedBack(state)
        # Without its form the run could not be answered: a failure here fails it.
        await form.asave(keyset, flow_run_id=run.id)
        try:
            current = await _watch(
                client, run.id, suspension, window=window, settings=settings, sigterm=sigterm
            )
        except Exception as exc:  # suspended all along: the answer resumes it elsewhere
            get_run_logger().warning(
                "Watching the suspended run failed (%s); its process ends, the run waits on.",
                type(exc).__name__,
            )
            return suspension
        if current is None:
            # The window's end, a stop (an end request or a SIGTERM), or another
            # process moved the run on: the run stays as it is.
            if sigterm.received or sigterm.changes.end_requested:
                get_run_logger().info(
                    "This process is stopping: the run stays suspended; the answer "
                    "resumes it on whichever serving process or worker is up then."
                )
            return suspension
        if _cancelled(current):
            # The runner or worker ends this process and records the cancel.
            await slot.release()
            await _forget_stored_answer(client, run.id, keyset)
            current = await _wait_for_the_cancel(client, run.id, sigterm=sigterm)
            return HandedBack(current.state or suspension.state)
        if current.state is not None and current.state.is_final():
            # Expired, or ended by someone else: nothing to propose.
            await slot.release()
            await _forget_stored_answer(client, run.id, keyset)
            return HandedBack(current.state)
        assert current.state is not None  # `_resumed`
        refused = await _take_back(client, run.id, resumed=current.state, sigterm=sigterm)
        if refused is not None and refused.is_final():
            # Cancelled as it was resumed (a deployment limit that cancels new runs).
            await _forget_stored_answer(client, run.id, keyset)
            return HandedBack(refused)
        if refused is not None:
            return HandedBack(suspension.state, explained=True)
        sigterm.taken_back = True
    return await form.aload(keyset, flow_run_id=run.id)


async def _watch(
    client: PrefectClient,
    flow_run_id: UUID,
    suspension: HandedBack,
    *,
    window: float,
    settings: HotWaitSettings,
    sigterm: _SigtermWhileWaiting,
) -> FlowRun | None:
    """Follow the suspended run for `window` seconds; the run once it is no longer waiting.

    None when this process should end and leave the run as it is: the window's end, a
    request to end the wait or a SIGTERM, or the run waiting again under another pause
    (another process took it over and moved on to a later prompt).
    """
    deadline = time.monotonic() + window
    rechecks = 0
    keys_at_start: set[str] | None = None
    async with _state_changes(flow_run_id, since=suspension.state.timestamp) as changes:
        sigterm.changes = changes
        while not (changes.end_requested or sigterm.received):
            current = await client.read_flow_run(flow_run_id)
            keys = set(current.empirical_policy.pause_keys or ())
            keys_at_start = keys if keys_at_start is None else keys_at_start
            if keys - keys_at_start or (
                current.state is not None
                and current.state.type is StateType.PAUSED
                and current.state.id != suspension.state.id
            ):
                return None  # another process took the run over and waits anew
            if _resumed(current):
                return current
            if (left := deadline - time.monotonic()) <= 0:
                return None
            pause = next_read_in(rechecks, connected_for=changes.connected_for(), settings=settings)
            rechecks = max(0, rechecks - 1)
            if await changes.wait(min(pause, left)):
                rechecks = RECHECKS
    return None


class _SigtermWhileWaiting:
    """What `_sigterm_ends` saw, and the wait it ends (`changes`, once the wait follows one)."""

    def __init__(self) -> None:
        self.received = False
        self.taken_back = False
        self.changes = StateChanges()


@contextlib.contextmanager
def _sigterm_ends() -> Iterator[_SigtermWhileWaiting]:
    """Until the run is taken back, a SIGTERM ends the wait instead of the process.

    A worker or serving process that stops, a container stopped, a service manager's
    stop of the whole group, or the runner's kill of a cancelled run: the process ends
    quietly and leaves the run as it is (suspended; or cancelled, which the runner
    then records). Prefect's own handler would report the run Crashed, ending an
    authorization whose link a person may be about to use. Once the run is taken back
    (Running again), Prefect's handler is back, and a SIGTERM received meanwhile is
    handed to it. Only in the main thread, where Python runs signal handlers.
    """
    seen = _SigtermWhileWaiting()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def end_wait(signum: int, frame: Any) -> None:
        seen.received = True
        loop.call_soon_threadsafe(seen.changes.request_end)

    signal.signal(signal.SIGTERM, end_wait)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)
    if seen.received and seen.taken_back and callable(previous):
        previous(signal.SIGTERM, None)  # taken back meanwhile: Prefect handles it now


def _cancelled(run: FlowRun) -> bool:
    """Whether the run is being cancelled or was."""
    state = run.state
    return state is not None and state.type in (StateType.CANCELLING, StateType.CANCELLED)


async def _wait_for_the_cancel(
    client: PrefectClient, flow_run_id: UUID, *, sigterm: _SigtermWhileWaiting
) -> FlowRun:
    """While the run is Cancelling, wait for the runner or worker to end this process.

    Its SIGTERM ends the wait (`_sigterm_ends`), and the process ends quietly: the runner
    or worker records the cancel. The run as last read (Cancelling, or the state it left
    Cancelling for without this process being ended).

    Raises:
        RunEndedWhileWaitingError: Still Cancelling after `CANCEL_PATIENCE_SECONDS`.
    """
    patience = time.monotonic() + CANCEL_PATIENCE_SECONDS
    while time.monotonic() < patience:
        run = await client.read_flow_run(flow_run_id)
        if sigterm.received or run.state is None or run.state.type is not StateType.CANCELLING:
            return run
        with anyio.move_on_after(1.0):
            while not sigterm.received:  # noqa: ASYNC110 - the signal handler sets it
                await anyio.sleep(0.05)
    raise RunEndedWhileWaitingError("The run is being cancelled.")


async def _take_back(
    client: PrefectClient,
    flow_run_id: UUID,
    *,
    resumed: State,
    sigterm: _SigtermWhileWaiting | None = None,
) -> State | None:
    """Claim the resumed run for this process, as a runner claims a scheduled run.

    Returns:
        None once this process holds the run (Running); else the run's state as far as
        this process knows (`resumed`, or Prefect's answer to the claim), said in the
        run's log.

    Prefect accepts Pending for one claimant only and aborts the others
    (`PreventPendingTransitions`). A claim that Prefect's client sent again after its
    answer was lost is answered with the run's state, this claim's Pending (Prefect's
    client gives each proposal a transition id, `PreventDuplicateTransitions`). Then
    Running, from this process's own Pending. A deployment whose concurrency limit is
    full answers the claim with Scheduled (`AwaitingConcurrencySlot`), or Cancelled when
    its limit cancels new runs (`SecureFlowConcurrencySlots`).

    Raises:
        RunEndedWhileWaitingError: The run was cancelled between the claim and its start.
    """
    logger = get_run_logger()
    if sigterm is not None and (
        sigterm.received or sigterm.changes.end_requested or sigterm.changes.unsupervised()
    ):
        logger.info(
            "This process is stopping: the resumed run goes on in a new process, on "
            "whichever serving process or worker is up."
        )
        return resumed
    try:
        state = await propose_state(client=client, state=Pending(), flow_run_id=flow_run_id)
    except Abort:
        logger.info("A runner or worker took the resumed run first: the run goes on there.")
        return resumed
    if not state.is_pending():
        _log_claim_refused(state)
        return state
    state = await propose_state(client=client, state=Running(), flow_run_id=flow_run_id)
    if not state.is_running():
        raise RunEndedWhileWaitingError(f"The run ended as it was resumed: {state.type.value}.")
    return None


async def _forget_stored_answer(
    client: PrefectClient, flow_run_id: UUID, keyset: dict[str, str]
) -> None:
    """Delete an answer stored for this wait that no process will read (best effort).

    Prefect keeps run input in plain text; a run that ends here never reads it, and no
    hook of the flow runs for an end Prefect's server decided alone.
    """
    try:
        await client.delete_flow_run_input(flow_run_id, keyset["response"])
    except Exception as exc:  # none stored (404), or Prefect unavailable: say which
        if not (isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code == 404):
            get_run_logger().warning(
                "Could not delete the run's unread answer: %s", type(exc).__name__
            )


def _log_claim_refused(state: State) -> None:
    """Say in the run's log why Prefect refused this process the resumed run (`state`)."""
    logger = get_run_logger()
    if state.is_scheduled():
        # Prefect's rule for a deployment's concurrency limit when no slot is free.
        logger.info(
            "The deployment's concurrency limit has no free slot: Prefect scheduled the "
            "resumed run again (%s); a runner or worker goes on with it, and its answer, "
            "once a slot is free.",
            state.name,
        )
    elif state.is_cancelled() or state.is_cancelling():
        logger.warning("The run was cancelled as it was resumed: %s", state.message or state.name)
    else:
        logger.info("Prefect did not give this process the resumed run: it is %s.", state.name)


def next_read_in(rechecks: int, *, connected_for: float | None, settings: HotWaitSettings) -> float:
    """Seconds until a hot run reads its state again, unless an event wakes it first.

    Right after an event, soon (`RECHECK_SECONDS`, while `rechecks` are left); else the
    backstop interval once the event stream has been connected for a poll interval, the
    poll interval until then. That first poll after a (re)connection covers an event
    sent just before it, which the stream's replay may not hold yet (the server stores
    events in batches).
    """
    if rechecks:
        return RECHECK_SECONDS
    if connected_for is not None and connected_for >= settings.poll_seconds:
        return STREAM_BACKSTOP_SECONDS
    return settings.poll_seconds


class StateChanges:
    """Wake-ups for a hot wait: set when Prefect's event stream reports a change of the run.

    Attributes:
        connected_at: When the event stream connected (monotonic), None while it is not.
        end_requested: The serving process asked the wait to end now (it is stopping).
        supervision: What started this process, while the wait follows it (`unsupervised`).
    """

    def __init__(self) -> None:
        self._changed = anyio.Event()
        self.connected_at: float | None = None
        self.end_requested = False
        self.supervision: Supervision | None = None
        self._unsupervised = False

    def unsupervised(self) -> bool:
        """Whether the serving process or worker that started this process is gone (or no
        longer reads its output); if so, end the wait (once).

        An orphaned process must not take the answered run: nobody would stop or report
        it, and Rich would end it on its first console log into the dead pipe. So its
        unread output goes to the null device first, and the run waits on, suspended.
        """
        if self._unsupervised:
            return True
        if self.supervision is None or not self.supervision.lost():
            return False
        self._unsupervised = True
        try:
            silence_unread_output()
        finally:
            self.request_end()
        with contextlib.suppress(Exception):
            get_run_logger().warning(
                "The serving process or worker that started this run's process is gone: the "
                "run stays suspended, and the answer resumes it on whichever is up then."
            )
        return True

    def connected_for(self) -> float | None:
        """Seconds since the event stream connected; None while it is not connected."""
        return None if self.connected_at is None else time.monotonic() - self.connected_at

    def notify(self) -> None:
        """The run's state changed (or may have): wake the waiter."""
        self._changed.set()

    def request_end(self) -> None:
        """End the wait now (the caller leaves the run suspended and its process ends)."""
        self.end_requested = True
        self._changed.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for the next change (True) or `timeout` seconds (False); then read the state.

        A change seen here is forgotten, which is safe only because the caller reads the
        run's state right after: a change that arrives meanwhile sets the next wake-up.
        """
        with anyio.move_on_after(timeout):
            await self._changed.wait()
        changed = self._changed.is_set()
        if changed:
            self._changed = anyio.Event()
        return changed


@contextlib.asynccontextmanager
async def _state_changes(flow_run_id: UUID, *, since: datetime) -> AsyncIterator[StateChanges]:
    """Follow the run's `prefect.flow-run.*` events after `since` while the body runs.

    Best effort: when the stream is unavailable, the caller's reads of the state are the
    only wake-ups.
    """
    changes = StateChanges()
    changes.supervision = Supervision()
    listeners = [
        asyncio.create_task(_follow_run_events(flow_run_id, changes, since=since)),
        asyncio.create_task(_follow_supervision(changes)),
    ]
    try:
        yield changes
    finally:
        for listener in listeners:
            listener.cancel()
        # Waited for, not awaited: their CancelledError stays in them, and a cancel of
        # this task arriving meanwhile is never swallowed.
        await asyncio.wait(listeners)


async def _follow_supervision(changes: StateChanges) -> None:
    """End the wait once this process is orphaned (`StateChanges.unsupervised`)."""
    while not changes.unsupervised():  # noqa: ASYNC110 - nothing signals a parent's end
        await asyncio.sleep(SUPERVISION_CHECK_SECONDS)


async def _follow_run_events(
    flow_run_id: UUID, changes: StateChanges, *, since: datetime | None = None
) -> None:
    """Notify `changes` of the run's state events and end requests; on any failure,
    leave it to polling.

    The stream first replays the last minute, which holds the run's own start (its
    Running state): events that occurred before `since` (the pause's state) are not
    changes of the wait, and waking for one would cost a burst of reads for nothing.
    An end request from before `since` was meant for an earlier wait.
    """
    run_events = EventFilter(
        resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        # Not the states a run passes through before it waits, nor its heartbeats: the
        # stream first replays the last minute, and these never end a wait.
        event=EventNameFilter(
            prefix=["prefect.flow-run.", HOT_WAIT_END_REQUESTED],
            exclude_name=[f"prefect.flow-run.{name}" for name in _NOT_AN_END_OF_WAIT],
        ),
    )
    was_connected = False
    try:
        async with get_events_subscriber(filter=run_events, reconnection_attempts=2) as events:
            changes.connected_at = time.monotonic()
            was_connected = True
            async for event in events:
                if since is not None and event.occurred < since:
                    continue
                if event.event == HOT_WAIT_END_REQUESTED:
                    changes.request_end()
                else:
                    changes.notify()
    except Exception as exc:  # the wait goes on, reading its state every poll interval
        get_logger(__name__).debug(
            "Prefect's event stream is unavailable (%s); the hot wait polls only.",
            type(exc).__name__,
        )
    finally:
        changes.connected_at = None
        if was_connected:
            # A wait asleep for the backstop interval reads now, then every poll interval.
            changes.notify()


def _resumed(run: FlowRun) -> bool:
    """Whether the wait is over: resumed (Prefect scheduled the run again), taken by a
    runner or worker (Pending, Running), cancelled or ended."""
    state = run.state
    return state is not None and state.type is not StateType.PAUSED
