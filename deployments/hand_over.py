"""A serving process that stops hands its hot waits over instead of cancelling them.

Prefect's runner, when it stops (SIGTERM: a restart, `docker stop`, a Kubernetes
rollout), cancels every run it holds. For a run in its hot wait that would end an
authorization whose link a person may be about to use. So before the runner cancels
anything, each run of this process that waits hot is asked to end its wait now
(`HOT_WAIT_END_REQUESTED`, an event on the run, read by the wait from the event
stream it follows): it suspends, its process ends, and the answer resumes it on
whichever serving process or worker is up then. The runner then cancels what is left
(runs that do not wait, and a hot wait that did not suspend within
`HAND_OVER_SECONDS`), as Prefect always does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from uuid import UUID

import anyio
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events import Event
from prefect.events.clients import get_events_client
from prefect.logging import get_logger
from prefect.runner import Runner

from flows.steps.hot_wait import HOT_WAIT_END_REQUESTED

# Within a service manager's patience (Kubernetes waits 30 s before SIGKILL): the
# switch to the suspension is a few requests.
HAND_OVER_SECONDS = 20.0
POLL_SECONDS = 0.2

logger = get_logger("deployments.hand_over")


def waits_hot(run: FlowRun) -> bool:
    """Whether the run is paused in its own process (a hot wait), not suspended."""
    state = run.state
    return (
        state is not None
        and state.type is StateType.PAUSED
        and not state.state_details.pause_reschedule
    )


def end_requested(flow_run_id: UUID) -> Event:
    """The event that asks the hot wait of a run to end now."""
    return Event(
        event=HOT_WAIT_END_REQUESTED,
        resource={"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"},
    )


async def hand_over_hot_waits(
    client: PrefectClient,
    in_flight: Callable[[], set[UUID]],
    *,
    timeout: float = HAND_OVER_SECONDS,
) -> set[UUID]:
    """Ask the runs of `in_flight` that wait hot to suspend now; wait until their processes end.

    Args:
        client: A Prefect client.
        in_flight: The runs whose processes this serving process holds, now.
        timeout: How long to wait for those processes to end.

    Returns:
        The hot waits still held when `timeout` passed (the runner cancels them).
    """
    hot: set[UUID] = set()
    for flow_run_id in in_flight():
        try:
            if waits_hot(await client.read_flow_run(flow_run_id)):
                hot.add(flow_run_id)
        except Exception as exc:  # left to the runner, as before
            logger.warning("Could not read run %s (%s).", flow_run_id, type(exc).__name__)
    if not hot:
        return set()
    logger.info("Stopping: %d run(s) waiting hot suspend first.", len(hot))
    async with get_events_client() as events:
        for flow_run_id in hot:
            await events.emit(end_requested(flow_run_id))
    # The runner's own tasks see each process end; this only looks at their record.
    deadline = time.monotonic() + timeout
    for _ in range(math.ceil(timeout / POLL_SECONDS)):
        if not hot & in_flight() or time.monotonic() >= deadline:
            break
        await anyio.sleep(POLL_SECONDS)
    if left := hot & in_flight():
        logger.warning("%d hot wait(s) did not suspend in time: cancelled.", len(left))
    return left


class HandingOverRunner(Runner):
    """Prefect's runner, whose stop hands its hot waits over before it cancels the rest."""

    async def cancel_all(self) -> None:
        """On stop, suspend the hot waits first (`hand_over_hot_waits`), then cancel."""
        if self.stopping:
            try:
                async with get_client() as client:
                    await hand_over_hot_waits(client, self._in_flight)
            except Exception:  # never in the way of the stop itself
                logger.exception("Handing the hot waits over failed; the runner cancels them.")
        await super().cancel_all()

    def _in_flight(self) -> set[UUID]:
        # The runner's own record of the processes it holds (no public accessor in
        # Prefect 3.9); `tests/e2e/test_hot_wait.py` fails if it moves.
        return self._process_manager.flow_run_ids()
