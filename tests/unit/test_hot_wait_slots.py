"""Hot-wait slots: a slot taken without waiting, given back once (at once when the run
ends while it waits); a busy database's refusal asked again soon."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import anyio
import httpx
import pytest
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectHTTPStatusError

from blocks import prefect_client as prefect_client_module
from blocks.prefect_client import prefect_client
from flows.steps import hot_slots
from flows.steps.hot_slots import HOT_WAIT_LIMIT, HotSlot
from tests.unit.prefect_stand_in import PrefectServerStandIn


class FakePrefect:
    """The requests a hot wait makes about its slot and its run, recorded in order."""

    def __init__(
        self,
        states: list[StateType] | None = None,
        *,
        locked: bool = False,
        failure: Exception | None = None,
    ) -> None:
        self.calls: list[str] = []
        self.states = list(states or [])
        self.locked = locked
        self.failure = failure
        self.fail_release = False
        self.lease_id = uuid4()

    async def increment_concurrency_slots_with_lease(self, **kwargs: Any) -> httpx.Response:
        self.calls.append(f"take {kwargs['names']}")
        request = httpx.Request("POST", "http://prefect/v2/concurrency_limits/increment-with-lease")
        if self.failure is not None:
            raise self.failure
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


_FINAL = {StateType.CANCELLED, StateType.FAILED, StateType.COMPLETED, StateType.CRASHED}


def _run(state: StateType) -> SimpleNamespace:
    return SimpleNamespace(
        id=uuid4(), state=SimpleNamespace(type=state, is_final=lambda: state in _FINAL)
    )


@pytest.fixture(autouse=True)
def _run_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hot_slots, "get_run_logger", lambda: logging.getLogger("hot-wait-test"))


async def test_a_slot_taken_is_given_back_when_the_wait_ends() -> None:
    prefect = FakePrefect()
    async with hot_slots.hot_slot(prefect, 240) as slot:  # type: ignore[arg-type]
        assert slot is not None
        assert prefect.calls == [f"take {[HOT_WAIT_LIMIT]}"]
    assert prefect.calls[-1] == f"release {prefect.lease_id}"


async def test_no_free_slot_means_no_slot_and_nothing_to_give_back() -> None:
    prefect = FakePrefect(locked=True)
    async with hot_slots.hot_slot(prefect, 240) as slot:  # type: ignore[arg-type]
        assert slot is None
    assert prefect.calls == [f"take {[HOT_WAIT_LIMIT]}"]


def _status_error(code: int) -> PrefectHTTPStatusError:
    request = httpx.Request("POST", "http://prefect/v2/concurrency_limits/increment-with-lease")
    response = httpx.Response(code, request=request)
    return PrefectHTTPStatusError.from_httpx_error(
        httpx.HTTPStatusError("refused", request=request, response=response)
    )


@pytest.mark.parametrize(
    "failure", [_status_error(503), httpx.ConnectError("refused")], ids=["503", "unreachable"]
)
async def test_a_failed_request_for_a_slot_is_no_slot_and_is_logged(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    # The hot wait only saves time: the run suspends at once instead of failing over it.
    prefect = FakePrefect(failure=failure)
    with caplog.at_level(logging.INFO, logger="hot-wait-test"):
        async with hot_slots.hot_slot(prefect, 240) as slot:  # type: ignore[arg-type]
            assert slot is None
    assert prefect.calls == [f"take {[HOT_WAIT_LIMIT]}"]
    assert f"Could not take a hot-wait slot ({type(failure).__name__})" in caplog.text


async def test_no_free_slot_is_said_as_such(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hot-wait-test"):
        async with hot_slots.hot_slot(FakePrefect(locked=True), 240) as slot:  # type: ignore[arg-type]
            assert slot is None
    assert "Every hot-wait slot" in caplog.text and "Could not" not in caplog.text


async def test_an_interrupted_request_for_a_slot_goes_on_up() -> None:
    prefect = FakePrefect(failure=asyncio.CancelledError())  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        async with hot_slots.hot_slot(prefect, 240):  # type: ignore[arg-type]
            pass


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


async def test_a_busy_databases_refusal_of_a_slot_is_asked_again_soon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On SQLite the first request is often refused so; Prefect's client alone would ask
    # again only after 2 s (at least 1.6 s with its jitter), the link shown only then.
    prefect = PrefectServerStandIn(refusals=2)
    monkeypatch.setattr(prefect_client_module, "get_client", prefect.client)
    async with prefect_client() as client:
        with anyio.fail_after(1.5):
            response = await hot_slots.request_slot(client, 240)
    assert response.json()["lease_id"] == str(prefect.lease_id)
    assert prefect.requests == 3


async def test_every_slot_taken_is_not_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    prefect = PrefectServerStandIn(refusals=0, then=423)
    monkeypatch.setattr(prefect_client_module, "get_client", prefect.client)
    async with prefect_client() as client:
        with pytest.raises(PrefectHTTPStatusError) as raised:
            await hot_slots.request_slot(client, 240)
    assert raised.value.response.status_code == 423
    assert prefect.requests == 1
