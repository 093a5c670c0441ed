"""Hot-wait slots: a slot taken without waiting, given back once (at once when the run
ends while it waits); a busy database's refusal asked again at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import anyio
import httpx
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectHTTPStatusError

from flows.steps import hot_slots
from flows.steps.hot_slots import HOT_WAIT_LIMIT, QUICK_SLOT_REQUESTS, HotSlot


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


@pytest.fixture
def direct_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slots asked for through the given client alone (`request_slot` is tested below)."""

    async def request_slot(client: Any, lease_seconds: float) -> httpx.Response:
        return await client.increment_concurrency_slots_with_lease(
            names=[HOT_WAIT_LIMIT], slots=1, mode="concurrency", lease_duration=lease_seconds
        )

    monkeypatch.setattr(hot_slots, "request_slot", request_slot)


@pytest.mark.usefixtures("direct_requests")
async def test_a_slot_taken_is_given_back_when_the_wait_ends() -> None:
    prefect = FakePrefect()
    async with hot_slots.hot_slot(prefect, 240) as slot:  # type: ignore[arg-type]
        assert slot is not None
        assert prefect.calls == [f"take {[HOT_WAIT_LIMIT]}"]
    assert prefect.calls[-1] == f"release {prefect.lease_id}"


@pytest.mark.usefixtures("direct_requests")
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


@pytest.mark.usefixtures("direct_requests")
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


@pytest.mark.usefixtures("direct_requests")
async def test_no_free_slot_is_said_as_such(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hot-wait-test"):
        async with hot_slots.hot_slot(FakePrefect(locked=True), 240) as slot:  # type: ignore[arg-type]
            assert slot is None
    assert "Every hot-wait slot" in caplog.text and "Could not" not in caplog.text


@pytest.mark.usefixtures("direct_requests")
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


class PrefectServerStandIn:
    """Prefect's API for a slot's request: 503 (a busy SQLite) `refusals` times, then
    `then` (200 with a lease, or 423 when every slot is taken)."""

    def __init__(self, refusals: int, then: int = 200) -> None:
        self.refusals = refusals
        self.then = then
        self.requests = 0
        self.lease_id = uuid4()
        self.unreachable = False

    def answer(self, request: httpx.Request) -> httpx.Response:
        if self.unreachable:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path.endswith("/csrf-token"):
            # CSRF protection off, as by default: Prefect's client stops asking.
            return httpx.Response(422, json={"detail": "CSRF protection is disabled."})
        assert request.url.path.endswith("/v2/concurrency_limits/increment-with-lease")
        self.requests += 1
        if self.requests <= self.refusals:
            return httpx.Response(503, json={"exception_message": "Service Unavailable"})
        if self.then != 200:
            return httpx.Response(self.then, json={"details": "locked"})
        return httpx.Response(200, json={"lease_id": str(self.lease_id), "limits": []})

    def client(self, httpx_settings: dict[str, Any] | None = None) -> PrefectClient:
        transport = httpx.MockTransport(self.answer)
        settings = {**(httpx_settings or {}), "transport": transport}
        return PrefectClient("http://prefect.test/api", httpx_settings=settings)


class Fallback:
    """The wait's own client, for the request after the quick ones."""

    def __init__(self) -> None:
        self.requests = 0

    async def increment_concurrency_slots_with_lease(self, **kwargs: Any) -> httpx.Response:
        self.requests += 1
        return httpx.Response(200, json={"lease_id": str(uuid4())})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrefectServerStandIn]:
    stand_in = PrefectServerStandIn(refusals=0)
    monkeypatch.setattr(hot_slots, "get_client", stand_in.client)
    yield stand_in


async def test_a_busy_databases_refusals_are_asked_again_at_once(
    server: PrefectServerStandIn,
) -> None:
    # Prefect's client would ask again only after 2 s (at least 1.6 s with its jitter).
    server.refusals = 2
    fallback = Fallback()
    with anyio.fail_after(1.5):
        response = await hot_slots.request_slot(fallback, 240)  # type: ignore[arg-type]
    assert response.json()["lease_id"] == str(server.lease_id)
    assert server.requests == 3 and fallback.requests == 0


async def test_after_the_quick_requests_the_waits_client_asks_with_its_retries(
    server: PrefectServerStandIn,
) -> None:
    server.refusals = 100
    fallback = Fallback()
    response = await hot_slots.request_slot(fallback, 240)  # type: ignore[arg-type]
    assert response.status_code == 200
    assert server.requests == QUICK_SLOT_REQUESTS.max_attempts - 1 and fallback.requests == 1


async def test_every_slot_taken_is_not_asked_again(server: PrefectServerStandIn) -> None:
    server.then = 423
    fallback = Fallback()
    with pytest.raises(PrefectHTTPStatusError) as raised:
        await hot_slots.request_slot(fallback, 240)  # type: ignore[arg-type]
    assert raised.value.response.status_code == 423
    assert server.requests == 1 and fallback.requests == 0


async def test_a_quick_client_that_cannot_connect_leaves_the_request_to_the_waits_client(
    server: PrefectServerStandIn,
) -> None:
    # Prefect's client does not retry a first connection; the wait's client, connected
    # before, does.
    server.unreachable = True
    fallback = Fallback()
    response = await hot_slots.request_slot(fallback, 240)  # type: ignore[arg-type]
    assert response.status_code == 200 and fallback.requests == 1
