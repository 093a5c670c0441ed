"""A serving process that stops hands its hot waits over instead of cancelling them.

Prefect's runner, when it stops (SIGTERM: a restart, `docker stop`, a Kubernetes
rollout), cancels every run it holds. For a run in its hot wait that would end an
authorization whose link a person may be about to use. So before the runner cancels
anything, each run of this process that waits hot is asked to end its wait now
(`HOT_WAIT_END_REQUESTED`, an event on the run, read by the wait from the event
stream it follows): its process ends, the run stays suspended (as it was all along),
and the answer resumes it on whichever serving process or worker is up then. The
request is sent again every `RESEND_SECONDS` to the runs still waiting hot, since a
wait only hears it while its stream is connected (one that just paused may not have
subscribed yet). A run answered meanwhile finishes its work within the same bound.
The runner then cancels what is left, as Prefect always does. The whole hand-over,
its requests to Prefect included, takes at most `OC_HAND_OVER_SECONDS` (8 s, under
`docker stop`'s 10 s)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from uuid import UUID

import anyio
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events import Event
from prefect.events.clients import EventsClient, get_events_client
from prefect.logging import get_logger
from prefect.runner import Runner

from flows.steps.hot_wait import HOT_WAIT_END_REQUESTED
from open_connectors.authorization import HOT_WAIT_SUFFIX

HAND_OVER_SETTING = "OC_HAND_OVER_SECONDS"
# Under `docker stop`'s default 10 s (Kubernetes waits 30 s) before SIGKILL, so that
# the runner's own cancels still run; a hot wait ends within moments of the request.
DEFAULT_HAND_OVER_SECONDS = 8.0
RESEND_SECONDS = 1.0

logger = get_logger("deployments.hand_over")


def hand_over_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """The bound on a stop's hand-over: `OC_HAND_OVER_SECONDS`, else 8 s; 0 turns it off."""
    value = environ.get(HAND_OVER_SETTING, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_HAND_OVER_SECONDS
    except ValueError:
        seconds = DEFAULT_HAND_OVER_SECONDS
    return max(seconds, 0.0)


def waits_hot(run: FlowRun) -> bool:
    """Whether the run's process (held by this serving process) watches its suspension.

    Under a hot wait's pause, or resumed and not yet taken back by that process (Prefect
    scheduled it again, "Resuming"): asked to end, the process leaves it to the next
    serving process or worker, where Prefect's runner would cancel it.
    """
    state = run.state
    if state is None:
        return False
    if state.type is StateType.SCHEDULED:
        return state.name == "Resuming"
    return state.type is StateType.PAUSED and (state.state_details.pause_key or "").endswith(
        HOT_WAIT_SUFFIX
    )


def end_requested(flow_run_id: UUID) -> Event:
    """The event that asks the hot wait of a run to end now."""
    return Event(
        event=HOT_WAIT_END_REQUESTED,
        resource={"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"},
    )


async def hand_over_hot_waits(in_flight: Callable[[], set[UUID]], *, timeout: float) -> set[UUID]:
    """Have the runs of `in_flight` that wait hot end their wait; wait until their processes end.

    Args:
        in_flight: The runs whose processes this serving process holds, now.
        timeout: The bound on all of it, Prefect's requests included.

    Returns:
        The runs asked that are still held when it ends (the runner cancels them).
    """
    asked: set[UUID] = set()
    with anyio.move_on_after(timeout):
        async with get_client() as client, contextlib.AsyncExitStack() as stack:
            events: EventsClient | None = None
            while True:
                held = in_flight()
                hot = await _waiting_hot(client, held)
                if not hot and not asked & held:
                    break
                if hot and events is None:
                    events = await stack.enter_async_context(get_events_client())
                    logger.info("Stopping: %d run(s) waiting hot end their wait first.", len(hot))
                for flow_run_id in hot:
                    await events.emit(end_requested(flow_run_id))  # type: ignore[union-attr]
                asked |= hot
                # The runner's own tasks see each process end; this reads their record.
                await anyio.sleep(RESEND_SECONDS)
    if left := asked & in_flight():
        logger.warning(
            "%d run(s) asked to end their wait still held: the runner cancels them.", len(left)
        )
    return left


async def _waiting_hot(client: PrefectClient, runs: set[UUID]) -> set[UUID]:
    """Those of `runs` that wait hot now (a run that cannot be read is left to the runner)."""
    hot: set[UUID] = set()
    for flow_run_id in runs:
        try:
            if waits_hot(await client.read_flow_run(flow_run_id)):
                hot.add(flow_run_id)
        except Exception as exc:
            logger.debug("Could not read run %s (%s).", flow_run_id, type(exc).__name__)
    return hot


class HandingOverRunner(Runner):
    """Prefect's runner, whose stop hands its hot waits over before it cancels the rest."""

    async def cancel_all(self) -> None:
        """On stop, end the hot waits first (`hand_over_hot_waits`), then cancel."""
        seconds = hand_over_seconds()
        if self.stopping and seconds > 0:
            try:
                await hand_over_hot_waits(self._in_flight, timeout=seconds)
            except Exception:  # never in the way of the stop itself
                logger.exception("Handing the hot waits over failed; the runner cancels them.")
        await super().cancel_all()

    def _in_flight(self) -> set[UUID]:
        # The runner's own record of the processes it holds (no public accessor in
        # Prefect 3.9); `tests/e2e/test_hot_wait.py` fails if it moves.
        return self._process_manager.flow_run_ids()
