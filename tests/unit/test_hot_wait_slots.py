"""Hot-wait slots and deadlines: a slot taken without waiting, given back once (at once when
the run is cancelled); a pause deadline the switch cannot miss on a slow server."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, PREFECT_CLIENT_RETRY_JITTER_FACTOR

from flows.steps import hot_wait
from flows.steps.hot_wait import HOT_WAIT_LIMIT, SWITCH_REQUESTS, HotSlot, HotWaitSettings
from open_connectors import RunEndedWhileWaitingError


class FakePrefect:
    """The requests a hot wait makes about its slot and its run, recorded in order."""

    def __init__(self, states: list[StateType] | None = None, *, locked: bool = False) -> None:
        self.calls: list[str] = []
        self.states = list(states or [])
        self.locked = locked
        self.fail_release = False
        self.lease_id = uuid4()

    async def increment_concurrency_slots_with_lease(self, **kwargs: Any) -> httpx.Response:
        self.calls.append(f"take {kwargs['names']}")
        request = httpx.Request("POST", "http://prefect/v2/concurrency_limits/increment-with-lease")
        if self.locked:
            response = httpx.Response(423, request=request)
            raise PrefectHTTPStatusError.from_httpx_error(
                httpx.HTTPStatusError("locked", request=request, response=response)
            )
        return httpx.Response(200, json={"lease_id": str(self.lease_id)}, request=request)

    async def release_concurrency_slots_with_lease(self, lease_id: UUID) -> None:
        self.calls.append(f"release {lease_id}")
        if self.fail_release:
            raise httpx.ConnectError("refused")

    async def read_flow_run(self, run_id: UUID) -> SimpleNamespace:
        self.calls.append("read")
        return _run(self.states.pop(0))


def _run(state: StateType) -> SimpleNamespace:
    return SimpleNamespace(
        id=uuid4(), state=SimpleNamespace(type=state, is_final=lambda: state == StateType.CANCELLED)
    )


@pytest.fixture(autouse=True)
def _run_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hot_wait, "get_run_logger", lambda: logging.getLogger("hot-wait-test"))


async def test_a_slot_taken_is_given_back_when_the_wait_ends() -> None:
    prefect = FakePrefect()
    async with hot_wait._hot_slot(prefect, 240) as slot:  # type: ignore[arg-type]
        assert slot is not None
        assert prefect.calls == [f"take {[HOT_WAIT_LIMIT]}"]
    assert prefect.calls[-1] == f"release {prefect.lease_id}"


async def test_no_free_slot_means_no_slot_and_nothing_to_give_back() -> None:
    prefect = FakePrefect(locked=True)
    async with hot_wait._hot_slot(prefect, 240) as slot:  # type: ignore[arg-type]
        assert slot is None
    assert prefect.calls == [f"take {[HOT_WAIT_LIMIT]}"]


async def test_a_slot_is_given_back_once() -> None:
    prefect = FakePrefect()
    slot = HotSlot(prefect, prefect.lease_id)  # type: ignore[arg-type]
    await slot.release()
    await slot.release()
    assert prefect.calls == [f"release {prefect.lease_id}"]


async def test_an_interrupted_give_back_is_tried_again_by_the_next_call() -> None:
    class Interrupted(BaseException):  # as Prefect's TerminationSignal on SIGTERM
        pass

    prefect = FakePrefect()
    original = prefect.release_concurrency_slots_with_lease

    async def interrupted_once(lease_id: UUID) -> None:
        prefect.release_concurrency_slots_with_lease = original  # type: ignore[method-assign]
        raise Interrupted

    prefect.release_concurrency_slots_with_lease = interrupted_once  # type: ignore[method-assign]
    slot = HotSlot(prefect, prefect.lease_id)  # type: ignore[arg-type]
    with pytest.raises(Interrupted):
        await slot.release()
    assert not slot.released
    await slot.release()
    assert slot.released and prefect.calls == [f"release {prefect.lease_id}"]


async def test_a_failed_give_back_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    prefect = FakePrefect()
    prefect.fail_release = True
    with caplog.at_level(logging.WARNING, logger="hot-wait-test"):
        await HotSlot(prefect, prefect.lease_id).release()  # type: ignore[arg-type]
    assert "lease runs out" in caplog.text


async def test_a_run_being_cancelled_gives_its_slot_back_before_it_is_ended() -> None:
    # The runner may kill the process (SIGTERM, then SIGKILL) before any cleanup of
    # it runs: the slot goes back as soon as the wait sees the cancel, not at its end.
    prefect = FakePrefect([StateType.CANCELLED])
    slot = HotSlot(prefect, prefect.lease_id)  # type: ignore[arg-type]
    with pytest.raises(RunEndedWhileWaitingError):
        await hot_wait._answered(prefect, _run(StateType.CANCELLING), slot=slot)  # type: ignore[arg-type]
    assert prefect.calls == [f"release {prefect.lease_id}", "read"]


@pytest.mark.parametrize("state", [StateType.PAUSED, StateType.RUNNING])
async def test_a_run_not_being_cancelled_keeps_its_slot(state: StateType) -> None:
    prefect = FakePrefect()
    slot = HotSlot(prefect, prefect.lease_id)  # type: ignore[arg-type]
    answered = await hot_wait._answered(prefect, _run(state), slot=slot)  # type: ignore[arg-type]
    assert answered is (state == StateType.RUNNING)
    assert prefect.calls == [] and not slot.released


def test_the_pause_outlives_prefects_retries_of_the_switch() -> None:
    # At the window's end the run resumes itself and reads its state; on a loaded server
    # (SQLite locked by a burst of answers) Prefect's client retries each refused request,
    # waiting 2, 4, 8... s plus jitter. A pause that expires meanwhile fails the run (seen
    # with a 60 s grace and 200 answers at once): its answer is turned away.
    backoff = sum(2**attempt for attempt in range(1, PREFECT_CLIENT_MAX_RETRIES.value() + 1))
    with_jitter = backoff * (1 + PREFECT_CLIENT_RETRY_JITTER_FACTOR.value())
    assert HotWaitSettings().grace_seconds >= SWITCH_REQUESTS * with_jitter
