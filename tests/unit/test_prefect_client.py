"""Prefect clients that ask again soon after a busy database's refusal, and only then."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from blocks import prefect_client as prefect_client_module
from blocks.prefect_client import (
    BURST_REFUSALS,
    BURST_SECONDS,
    QUICK_RETRY_SECONDS,
    ask_again_soon,
    prefect_client,
)
from tests.unit.prefect_stand_in import BUSY, PrefectServerStandIn

SLOT = {"names": ["a-limit"], "slots": 1, "mode": "concurrency", "lease_duration": 60}


@pytest.fixture
def no_sleep_after_quick_retries(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Prefect's back-off sleeps recorded instead of slept when longer than a second."""
    slept: list[float] = []
    real_sleep = anyio.sleep

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(seconds if seconds < 1 else 0)

    monkeypatch.setattr("prefect.client.base.anyio.sleep", sleep)
    return slept


async def test_a_busy_databases_refusals_are_asked_again_soon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prefect's client alone asks again after 2 s (at least 1.6 s with its jitter), then 4.
    prefect = PrefectServerStandIn(refusals=2)
    monkeypatch.setattr(prefect_client_module, "get_client", prefect.client)
    started = time.monotonic()
    async with prefect_client() as client:
        with anyio.fail_after(1.5):
            response = await client.increment_concurrency_slots_with_lease(**SLOT)
    assert response.status_code == 200 and prefect.requests == 3
    assert time.monotonic() - started < 1.5


async def test_a_database_that_stays_busy_gets_prefects_back_off_after_the_quick_retries(
    monkeypatch: pytest.MonkeyPatch, no_sleep_after_quick_retries: list[float]
) -> None:
    prefect = PrefectServerStandIn(refusals=100)
    monkeypatch.setattr(prefect_client_module, "get_client", prefect.client)
    async with prefect_client() as client:
        with pytest.raises(PrefectHTTPStatusError) as raised:
            await client.increment_concurrency_slots_with_lease(**SLOT)
    assert raised.value.response.status_code == 503
    slept = no_sleep_after_quick_retries
    quick = len(QUICK_RETRY_SECONDS)
    attempts = PREFECT_CLIENT_MAX_RETRIES.value() + 1
    assert prefect.requests == attempts == len(slept)
    # The quick ones (Prefect adds up to 20 % to a server's Retry-After), then its own;
    # Prefect's client sleeps after its last attempt too, before it gives the refusal
    # back: 0 there (Prefect's own would be 64 s).
    assert [round(s, 2) for s in slept[:quick]] == pytest.approx(QUICK_RETRY_SECONDS, rel=0.21)
    assert all(s > 1 for s in slept[quick:-1]) and len(slept) > quick + 1
    assert slept[-1] == 0


async def test_with_fewer_retries_the_last_attempt_still_gives_the_refusal_back_at_once(
    monkeypatch: pytest.MonkeyPatch, no_sleep_after_quick_retries: list[float]
) -> None:
    prefect = PrefectServerStandIn(refusals=100)
    monkeypatch.setattr(prefect_client_module, "get_client", prefect.client)
    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 2}):
        async with prefect_client() as client:
            with pytest.raises(PrefectHTTPStatusError):
                await client.increment_concurrency_slots_with_lease(**SLOT)
    slept = no_sleep_after_quick_retries
    assert prefect.requests == 3
    assert [round(s, 2) for s in slept[:2]] == pytest.approx(QUICK_RETRY_SECONDS[:2], rel=0.21)
    assert slept[2:] == [0]


def _response(request: httpx.Request, answer: httpx.Response) -> httpx.Response:
    return httpx.Response(
        answer.status_code, headers=answer.headers, content=answer.content, request=request
    )


async def test_each_request_counts_its_own_refusals() -> None:
    first = httpx.Request("POST", "http://prefect.test/api/flow_runs/1/set_state")
    second = httpx.Request("POST", "http://prefect.test/api/flow_runs/1/set_state")
    delays = []
    for request in (first, first, second, first, first):
        response = _response(request, BUSY)
        await ask_again_soon(response)
        delays.append(response.headers.get("Retry-After"))
    quick = [str(seconds) for seconds in QUICK_RETRY_SECONDS]
    assert delays == [quick[0], quick[1], quick[0], quick[2], None]


async def test_under_a_burst_of_refusals_every_request_keeps_prefects_back_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A receiver answering many callbacks at once on SQLite: asking again within a second
    # would only add to the load on a database that refuses them.
    clock = [1000.0]
    monkeypatch.setattr(prefect_client_module.time, "monotonic", lambda: clock[0])
    delays = []
    for n in range(BURST_REFUSALS + 2):
        request = httpx.Request("POST", f"http://prefect.test/api/flow_runs/{n}/resume")
        response = _response(request, BUSY)
        await ask_again_soon(response)
        delays.append(response.headers.get("Retry-After"))
        clock[0] += 0.1
    quick = str(QUICK_RETRY_SECONDS[0])
    assert delays == [quick] * BURST_REFUSALS + [None, None]
    clock[0] += BURST_SECONDS  # the burst is over: a refusal is asked again soon again
    response = _response(httpx.Request("POST", "http://prefect.test/api/x"), BUSY)
    await ask_again_soon(response)
    assert response.headers.get("Retry-After") == quick


@pytest.mark.parametrize(
    "answer",
    [
        # A proxy or load balancer in front of Prefect: its outage gets Prefect's patience.
        httpx.Response(503, text="<html>Service Temporarily Unavailable</html>"),
        # The server said when to come back.
        httpx.Response(
            503, headers={"Retry-After": "30"}, json={"exception_message": "Service Unavailable"}
        ),
        # Not a busy database.
        httpx.Response(500, json={"exception_message": "Internal Server Error"}),
        httpx.Response(200, json={"exception_message": "Service Unavailable"}),
        # Prefect Cloud's maintenance: its client asks again as long as it lasts, uncounted.
        httpx.Response(
            503,
            headers={"Prefect-Maintenance": "true"},
            json={"exception_message": "Service Unavailable"},
        ),
    ],
    ids=["proxy-503", "retry-after-given", "500", "200", "maintenance"],
)
async def test_other_answers_are_left_as_they_are(answer: httpx.Response) -> None:
    request = httpx.Request("POST", "http://prefect.test/api/flow_runs/1/set_state")
    response = _response(request, answer)
    before = dict(response.headers)
    await ask_again_soon(response)
    assert dict(response.headers) == before


async def test_a_proxys_503_keeps_prefects_back_off(
    monkeypatch: pytest.MonkeyPatch, no_sleep_after_quick_retries: list[float]
) -> None:
    proxy = httpx.Response(503, text="<html>Service Temporarily Unavailable</html>")
    prefect = PrefectServerStandIn(refusals=1, refusal=proxy)
    monkeypatch.setattr(prefect_client_module, "get_client", prefect.client)
    async with prefect_client() as client:
        response = await client.increment_concurrency_slots_with_lease(**SLOT)
    assert response.status_code == 200 and prefect.requests == 2
    assert no_sleep_after_quick_retries[0] > 1
