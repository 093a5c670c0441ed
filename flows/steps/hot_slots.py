"""Hot-wait slots: the Prefect global concurrency limit that bounds hot waits.

At most `open-connectors-hot-waits` runs wait hot at once; each holds a slot under a
lease for its window (`flows.steps.hot_wait`). A run that gets no slot suspends at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from uuid import UUID

import anyio
import httpx
from prefect import get_run_logger
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from starlette import status

HOT_WAIT_LIMIT = "open-connectors-hot-waits"


class HotSlot:
    """A hot-wait slot held under a lease, given back once: at the end of the wait, or
    as soon as the wait sees the run ended.
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
                self.released = False  # the slot's own cleanup (`hot_slot`) tries again
                raise


@contextlib.asynccontextmanager
async def hot_slot(client: PrefectClient, lease_seconds: float) -> AsyncIterator[HotSlot | None]:
    """Take a hot-wait slot if one is free now, without waiting for one (None: the run
    suspends at once).

    One request, answered by the server from the limit's state: a slow server delays the
    answer but never turns a free slot into "all taken", as a client-side acquisition
    timeout would. The lease outlives the hot window, so it needs no renewal; a process
    that dies leaves it to run out. A request that fails (after Prefect's client's own
    retries) is no slot either: the hot wait only saves time, and the authorization goes
    on suspended rather than fail over it.
    """
    slot: HotSlot | None = None
    try:
        response = await request_slot(client, lease_seconds)
        slot = HotSlot(client, UUID(response.json()["lease_id"]))
    except Exception as exc:  # not BaseException: a cancel or a signal goes on up
        _log_no_slot(exc)
    if slot is None:
        yield None
        return
    try:
        yield slot
    finally:
        await slot.release()


async def request_slot(client: PrefectClient, lease_seconds: float) -> httpx.Response:
    """Ask Prefect for one slot under a lease; its answer (200 with the lease).

    `client` asks again soon after a busy database's refusal (`blocks.prefect_client`):
    on SQLite the first request for a slot is often refused so (503, nothing taken: the
    link step's records were being written), and Prefect's client alone would show the
    link only 2 s later.

    Raises:
        PrefectHTTPStatusError: 423 when every slot is taken; another status once
            Prefect's client gave up.
    """
    return await client.increment_concurrency_slots_with_lease(
        names=[HOT_WAIT_LIMIT], slots=1, mode="concurrency", lease_duration=lease_seconds
    )


def _log_no_slot(exc: Exception) -> None:
    """Say why the run suspends at once instead of waiting hot."""
    logger = get_run_logger()
    if (
        isinstance(exc, PrefectHTTPStatusError)
        and exc.response.status_code == status.HTTP_423_LOCKED
    ):
        logger.info("Every hot-wait slot (%s) is taken: the run suspends now.", HOT_WAIT_LIMIT)
    else:
        logger.warning(
            "Could not take a hot-wait slot (%s): the run suspends now.", type(exc).__name__
        )


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
