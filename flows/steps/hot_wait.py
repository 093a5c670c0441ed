"""The hot wait: the first minutes of a wait spent in the run's own process.

An answer is most likely in the minutes after the link is shown. A suspended run
needs a new flow-run process once answered (seconds of a new interpreter importing
Prefect); a run that waits in its own process goes on at once. So a run started
from a deployment first *pauses* in its process for `OC_HOT_WAIT_SECONDS`, and only
then suspends (no process held) for the rest of the wait. The hot run follows its own
state on Prefect's event stream (`prefect.flow-run.*` events of the run, the websocket
Prefect's own clients use, on a server and on Prefect Cloud), so a resume wakes it at
once. It also reads its state now and then, in case an event is lost: every
`STREAM_BACKSTOP_SECONDS` while the stream is connected, every
`OC_HOT_WAIT_POLL_SECONDS` while it is not (each read is a request the server answers,
for every hot run, for minutes).

Hot waits are bounded by the Prefect global concurrency limit
`open-connectors-hot-waits` (`OC_HOT_WAIT_LIMIT` slots when the flow creates it;
change it in the Prefect UI under Concurrency): beyond it a run suspends at once,
so any number of waiting authorizations holds at most that many processes (plus, for
a moment, a cancelled one). Slots are leases: a run being cancelled gives its slot
back as soon as its wait sees the cancel (the runner may kill the process before it
ends; until then K + 1 processes may wait hot); a process that dies gives its slot
back when the lease runs out.

The switch from hot to suspended goes through Prefect's orchestration, never around
it: the run resumes itself with an empty answer (`POST /flow_runs/{id}/resume`),
which Prefect refuses when the run was answered, cancelled or expired in the
meantime. An answer that won that race is read and used; a cancel or an expiry is
respected. Between the self-resume and the suspension the run is Running for a
moment: a callback arriving then waits for the suspension (the receiver's
early-callback path) and is not lost. The server-side pause deadline is the hot
window plus a grace period, so a process that dies while it waits hot leaves a run
that expires within the grace, rather than one that would be resumed with nobody to run
it. The grace (5 minutes) outlasts the waits of Prefect's client retrying the switch's
requests on a loaded server: a pause that expires first fails a live run and turns its
answer away. The price: when a whole serving machine dies, an answer that comes within
the window and the grace resumes a run nobody runs any more (it stays Running).

A serving process that is stopped (SIGTERM: a restart, `docker stop`, a Kubernetes
rollout) would have Prefect's runner cancel every run it holds, hot waits included.
Instead it first asks its hot waits to end now (`HOT_WAIT_END_REQUESTED`, an event on
the run, delivered by the stream the wait already follows): each switches to its
suspension at once, through the same orchestrated switch as at the window's end, and
whichever serving process or worker is up when the answer arrives carries it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TypeVar
from uuid import UUID

import anyio
from prefect import get_run_logger
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_paused_state
from prefect.logging import get_logger
from prefect.states import Paused
from prefect.utilities.engine import propose_state
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette import status

from open_connectors import RunEndedWhileWaitingError

HOT_WAIT_LIMIT = "open-connectors-hot-waits"
# Emitted on a run (`prefect.flow-run.<id>`) to end its hot wait now: it suspends.
HOT_WAIT_END_REQUESTED = "open-connectors.hot-wait.end-requested"
# How long a hot wait leaves a cancel to the runner before it stops by itself.
CANCEL_PATIENCE_SECONDS = 60.0
# Prefect announces a state change before its API shows it (the event is sent before
# the transaction commits): after an event, the run reads its state again this often,
# this many times, before it falls back to the poll interval.
RECHECK_SECONDS = 0.05
RECHECKS = 10
# The requests that may follow the window's end before the switch's outcome: a read of
# the state begun just before it, the self-resume, and the read of the state it left.
SWITCH_REQUESTS = 3
# While the event stream is connected, reads of the state are only a backstop for a
# lost event: a resume wakes the run through the stream at once.
STREAM_BACKSTOP_SECONDS = 15.0
_NOT_AN_END_OF_WAIT = ("heartbeat", "Scheduled", "Late", "Pending", "Submitting", "Paused")

R = TypeVar("R", bound=RunInput)


class HotWaitSettings(BaseSettings):
    """How runs wait hot; from `OC_HOT_WAIT_*` environment variables of the flow-run process.

    Attributes:
        seconds: The hot window; 0 turns hot waits off (runs suspend at once).
        limit: Hot waits at once, when the flow creates the concurrency limit.
        poll_seconds: How often a hot run reads its state while Prefect's event stream is
            unavailable (while it is connected, every `STREAM_BACKSTOP_SECONDS`).
        grace_seconds: How long past the window the server keeps a hot pause alive: the
            switch's requests must land within it, on a loaded server too (Prefect's client
            waits about a minute in all between its retries of a refused request, and up to
            `SWITCH_REQUESTS` of them follow the window's end), yet a run whose serving
            machine died expires that soon after its window.
    """

    model_config = SettingsConfigDict(env_prefix="OC_HOT_WAIT_", extra="ignore")

    seconds: float = Field(default=180.0, ge=0, le=3600)
    limit: int = Field(default=4, ge=1, le=1000)
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    grace_seconds: float = Field(default=300.0, ge=10, le=3600)

    @property
    def enabled(self) -> bool:
        """Whether runs wait hot at all."""
        return self.seconds > 0


async def wait_hot(
    form: type[R], *, run: FlowRun, key: str, window: float, settings: HotWaitSettings
) -> R | None:
    """Pause in this process for at most `window` seconds; the answer, or None to suspend.

    None means no answer came in time (or no hot slot was free): the run is Running
    again and the caller suspends it. `window` never exceeds the wait that is left.

    Raises:
        RunEndedWhileWaitingError: The run was cancelled or expired meanwhile.
    """
    logger = get_run_logger()
    async with get_client() as client:
        if await ensure_hot_wait_limit(client, settings.limit) < 1:
            # Zero slots is how an operator turns hot waits off in the UI; the server
            # would refuse a request for a slot of it as invalid.
            logger.info("The hot-wait limit %s has 0 slots: the run suspends now.", HOT_WAIT_LIMIT)
            return None
        lease_seconds = max(window + settings.grace_seconds, 60.0)
        async with _hot_slot(client, lease_seconds) as slot:
            if slot is None:
                logger.info(
                    "Every hot-wait slot (%s) is taken: the run suspends now.", HOT_WAIT_LIMIT
                )
                return None
            logger.info(
                "Waiting for the authorization in this process for %.0f s, then suspended.",
                window,
            )
            return await _pause_in_process(
                form, run=run, key=key, window=window, settings=settings, slot=slot
            )


async def stored_hot_answer(form: type[R], *, run: FlowRun, key: str) -> R:
    """What the hot wait `key` of this run received (empty once it was read and deleted).

    For a re-run whose earlier process waited hot under `key`: the same form is never
    shown twice, as Prefect hands back the input of a suspension that already fired.
    """
    return await form.aload(_hot_keyset(key), flow_run_id=run.id)


def _hot_keyset(key: str) -> dict[str, str]:
    """The run input keys of the hot wait `key` (Prefect's naming for a Paused state)."""
    return keyset_from_paused_state(Paused(pause_key=key))


class HotSlot:
    """A hot-wait slot held under a lease, given back once: at the end of the wait, or
    as soon as the run is being cancelled (its process may be killed before it ends).
    """

    def __init__(self, client: PrefectClient, lease_id: UUID) -> None:
        self._client = client
        self._lease_id = lease_id
        self.released = False

    async def release(self) -> None:
        """Give the slot back (once; later calls do nothing).

        A failed request is logged, not raised (the lease runs out by itself). An
        interruption (a signal, a cancel from outside anyio) is raised and leaves the
        slot to a later call.
        """
        if self.released:
            return
        self.released = True
        with anyio.CancelScope(shield=True):
            try:
                await self._client.release_concurrency_slots_with_lease(self._lease_id)
            except Exception as exc:
                get_run_logger().warning(
                    "Could not give the hot-wait slot back (%s); it frees itself when its "
                    "lease runs out.",
                    type(exc).__name__,
                )
            except BaseException:
                self.released = False  # the slot's own cleanup (`_hot_slot`) tries again
                raise


@contextlib.asynccontextmanager
async def _hot_slot(client: PrefectClient, lease_seconds: float) -> AsyncIterator[HotSlot | None]:
    """Take a hot-wait slot if one is free now, without waiting for one (None).

    One request, answered by the server from the limit's state: a slow server delays the
    answer but never turns a free slot into "all taken", as a client-side acquisition
    timeout would. The lease outlives the hot window, so it needs no renewal; a process
    that dies leaves it to run out.
    """
    try:
        response = await client.increment_concurrency_slots_with_lease(
            names=[HOT_WAIT_LIMIT], slots=1, mode="concurrency", lease_duration=lease_seconds
        )
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != status.HTTP_423_LOCKED:
            raise
        yield None
        return
    slot = HotSlot(client, UUID(response.json()["lease_id"]))
    try:
        yield slot
    finally:
        await slot.release()


async def _pause_in_process(
    form: type[R],
    *,
    run: FlowRun,
    key: str,
    window: float,
    settings: HotWaitSettings,
    slot: HotSlot,
) -> R | None:
    proposed = Paused(
        timeout_seconds=int(window + settings.grace_seconds), reschedule=False, pause_key=key
    )
    keyset = _hot_keyset(key)
    proposed.state_details.run_input_keyset = keyset
    async with get_client() as client:
        state = await propose_state(client=client, state=proposed, flow_run_id=run.id)
        if state.is_running():
            # This pause fired before and was answered: hand the stored answer back.
            return await form.aload(keyset, flow_run_id=run.id)
        if not state.is_paused():
            raise RunEndedWhileWaitingError(f"The run could not wait: it is {state.type.value}.")
        await form.asave(keyset, flow_run_id=run.id)
        deadline = time.monotonic() + window
        rechecks = 0
        async with _state_changes(run.id, since=state.timestamp) as changes:
            while (left := deadline - time.monotonic()) > 0 and not changes.end_requested:
                current = await client.read_flow_run(run.id)
                answered = await _answered(client, current, slot=slot)
                if answered:
                    return await form.aload(keyset, flow_run_id=run.id)
                pause = next_read_in(
                    rechecks, connected_for=changes.connected_for(), settings=settings
                )
                rechecks = max(0, rechecks - 1)
                if await changes.wait(min(pause, left)):
                    rechecks = RECHECKS
        if changes.end_requested:
            get_run_logger().info(
                "The serving process is stopping: the run suspends now; the answer "
                "resumes it on whichever serving process or worker is up then."
            )
        # Resume ourselves through orchestration: refused if somebody else was first.
        result = await client.resume_flow_run(run.id, run_input={})
        current = await client.read_flow_run(run.id)
        if await _answered(client, current, slot=slot):
            if result.status != SetStateStatus.ACCEPT:
                # Somebody else resumed it first: that was the answer.
                return await form.aload(keyset, flow_run_id=run.id)
            return None
        raise RunEndedWhileWaitingError(
            "The run stopped waiting while it waited in process "
            f"({current.state.type.value if current.state else 'no state'})."
        )


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
    """

    def __init__(self) -> None:
        self._changed = anyio.Event()
        self.connected_at: float | None = None
        self.end_requested = False

    def connected_for(self) -> float | None:
        """Seconds since the event stream connected; None while it is not connected."""
        return None if self.connected_at is None else time.monotonic() - self.connected_at

    def notify(self) -> None:
        """The run's state changed (or may have): wake the waiter."""
        self._changed.set()

    def request_end(self) -> None:
        """End the wait now (the caller then switches to the suspension)."""
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
    listener = asyncio.create_task(_follow_run_events(flow_run_id, changes, since=since))
    try:
        yield changes
    finally:
        listener.cancel()
        # Waited for, not awaited: its CancelledError stays in it, and a cancel of this
        # task arriving meanwhile is never swallowed.
        await asyncio.wait([listener])


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


async def _answered(client: PrefectClient, run: FlowRun, *, slot: HotSlot) -> bool:
    """Whether the hot pause is over (resumed); raise when the run ended instead.

    A cancel wins: while the run is Cancelling, nothing is proposed and this process
    waits for the runner or worker to end it (as it ends any cancelled run). The slot is
    given back first: the process may be killed before its own cleanup runs.

    Raises:
        RunEndedWhileWaitingError: The run is cancelled, failed, crashed or completed.
    """
    state = run.state
    patience = time.monotonic() + CANCEL_PATIENCE_SECONDS
    if state is not None and state.type is StateType.CANCELLING:
        await slot.release()
    while state is not None and state.type is StateType.CANCELLING:
        if time.monotonic() > patience:
            raise RunEndedWhileWaitingError("The run is being cancelled.")
        await anyio.sleep(1.0)
        state = (await client.read_flow_run(run.id)).state
    if state is None:
        return False
    if state.type is StateType.RUNNING:
        return True
    if state.is_final():
        raise RunEndedWhileWaitingError(f"The run ended while it waited: {state.type.value}.")
    return False


async def ensure_hot_wait_limit(client: PrefectClient, limit: int) -> int:
    """Create the hot-wait concurrency limit on first use; its number of slots.

    An existing limit is kept as it is (the operator's choice in the UI).
    """
    with contextlib.suppress(ObjectNotFound):
        return (await client.read_global_concurrency_limit_by_name(HOT_WAIT_LIMIT)).limit
    with contextlib.suppress(ObjectAlreadyExists):  # another run created it first
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=HOT_WAIT_LIMIT, limit=limit, active=True)
        )
        return limit
    return (await client.read_global_concurrency_limit_by_name(HOT_WAIT_LIMIT)).limit
