"""A stopping serving process asks its hot waits to suspend before Prefect cancels its runs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import anyio
import pytest
from prefect.server.events.filters import EventFilter as ServerEventFilter
from prefect.server.events.schemas.events import Event as ServerEvent
from prefect.states import Paused, Running, Scheduled, Suspended

from deployments import hand_over
from deployments.hand_over import (
    DEFAULT_HAND_OVER_SECONDS,
    HandingOverRunner,
    hand_over_hot_waits,
    hand_over_seconds,
    waits_hot,
)
from flows.steps import hot_wait
from flows.steps.hot_wait import HOT_WAIT_END_REQUESTED
from tests.unit.test_hot_wait_wakeups import fake_stream


def hot_pause() -> Any:
    """A hot wait's pause: suspended on the server, watched by its process."""
    return Paused(reschedule=True, pause_key="authorization-1-hot")


class Serving:
    """The runs a serving process holds, their states on a fake Prefect, and the requests
    to end a hot wait it sent; a hot wait suspends (and its process ends) once it hears one.
    """

    def __init__(self, states: dict[UUID, Any], *, deaf_to: int = 0, hangs: bool = False) -> None:
        self.states = states
        self.held = set(states)
        self.deaf_to = deaf_to  # requests each hot wait misses (its stream not connected yet)
        self.hangs = hangs  # Prefect never answers a read
        self.asked: list[UUID] = []

    def in_flight(self) -> set[UUID]:
        return set(self.held)

    async def read_flow_run(self, flow_run_id: UUID) -> Any:
        if self.hangs:
            await anyio.sleep(3600)
        state = self.states[flow_run_id]
        if state is None:
            raise OSError("connection reset")
        return SimpleNamespace(id=flow_run_id, state=state)

    async def emit(self, event: Any) -> None:
        assert event.event == HOT_WAIT_END_REQUESTED
        run_id = UUID(event.resource.id.removeprefix("prefect.flow-run."))
        self.asked.append(run_id)
        if self.asked.count(run_id) > self.deaf_to:
            # Its process ends; the run stays suspended under the hot wait's pause.
            self.held.discard(run_id)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        @contextlib.asynccontextmanager
        async def client() -> AsyncIterator[Serving]:
            yield self

        monkeypatch.setattr(hand_over, "get_client", client)
        monkeypatch.setattr(hand_over, "get_events_client", client)
        monkeypatch.setattr(hand_over, "RESEND_SECONDS", 0.01)


def test_only_a_hot_waits_pause_is_a_hot_wait() -> None:
    assert waits_hot(SimpleNamespace(state=hot_pause()))  # type: ignore[arg-type]
    assert not waits_hot(SimpleNamespace(state=Suspended(pause_key="authorization-1")))  # type: ignore[arg-type]
    assert not waits_hot(SimpleNamespace(state=Running()))  # type: ignore[arg-type]
    # Resumed while its process watched it, not yet taken back: that process still ends.
    assert waits_hot(SimpleNamespace(state=Scheduled(name="Resuming")))  # type: ignore[arg-type]
    assert not waits_hot(SimpleNamespace(state=Scheduled()))  # type: ignore[arg-type]
    assert not waits_hot(SimpleNamespace(state=None))  # type: ignore[arg-type]


async def test_the_hot_waits_are_asked_to_suspend_and_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hot, suspended, running, unreadable = uuid4(), uuid4(), uuid4(), uuid4()
    serving = Serving(
        {
            hot: hot_pause(),
            suspended: Suspended(),
            running: Running(),
            unreadable: None,
        }
    )
    serving.install(monkeypatch)
    assert await hand_over_hot_waits(serving.in_flight, timeout=5) == set()
    # Only the hot wait is asked; the others are left to the runner, as before.
    assert serving.asked == [hot]
    assert serving.in_flight() == {suspended, running, unreadable}


async def test_a_request_a_wait_missed_is_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # A wait that paused a moment before the stop may not follow its event stream yet.
    hot = uuid4()
    serving = Serving({hot: hot_pause()}, deaf_to=2)
    serving.install(monkeypatch)
    assert await hand_over_hot_waits(serving.in_flight, timeout=5) == set()
    assert serving.asked == [hot, hot, hot]


async def test_a_hot_wait_that_does_not_suspend_in_time_is_left_to_the_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hot = uuid4()
    serving = Serving({hot: hot_pause()}, deaf_to=10**6)
    serving.install(monkeypatch)
    started = time.monotonic()
    assert await hand_over_hot_waits(serving.in_flight, timeout=0.2) == {hot}
    assert time.monotonic() - started < 2


async def test_the_bound_covers_prefects_own_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that does not answer (Prefect's client would retry for a minute) does not
    # hold the stop past its bound.
    serving = Serving({uuid4(): hot_pause()}, hangs=True)
    serving.install(monkeypatch)
    started = time.monotonic()
    assert await hand_over_hot_waits(serving.in_flight, timeout=0.2) == set()
    assert time.monotonic() - started < 2


async def test_nothing_is_sent_when_no_run_waits_hot(monkeypatch: pytest.MonkeyPatch) -> None:
    serving = Serving({uuid4(): Running()})
    serving.install(monkeypatch)

    def no_events() -> Any:
        raise AssertionError("no event is sent")

    monkeypatch.setattr(hand_over, "get_events_client", no_events)
    assert await hand_over_hot_waits(serving.in_flight, timeout=5) == set()


def test_the_bound_is_a_setting_under_dockers_stop_timeout() -> None:
    assert hand_over_seconds({}) == DEFAULT_HAND_OVER_SECONDS < 10
    assert hand_over_seconds({"OC_HAND_OVER_SECONDS": "25"}) == 25
    assert hand_over_seconds({"OC_HAND_OVER_SECONDS": "0"}) == 0
    assert hand_over_seconds({"OC_HAND_OVER_SECONDS": "soon"}) == DEFAULT_HAND_OVER_SECONDS


@pytest.mark.parametrize(("stopping", "seconds"), [(True, "8"), (False, "8"), (True, "0")])
async def test_the_runner_hands_over_only_when_it_stops(
    monkeypatch: pytest.MonkeyPatch, stopping: bool, seconds: str
) -> None:
    order: list[str] = []

    async def handed_over(in_flight: Any, **_: Any) -> set[UUID]:
        order.append("hand over")
        return set()

    async def cancelled(self: Any) -> None:
        order.append("cancel")

    monkeypatch.setenv("OC_HAND_OVER_SECONDS", seconds)
    monkeypatch.setattr(hand_over, "hand_over_hot_waits", handed_over)
    monkeypatch.setattr(hand_over.Runner, "cancel_all", cancelled)
    runner = object.__new__(HandingOverRunner)  # no Prefect client or server behind it
    runner.stopping = stopping
    await runner.cancel_all()
    handing_over = stopping and seconds != "0"
    assert order == (["hand over", "cancel"] if handing_over else ["cancel"])


async def test_prefects_server_passes_the_request_to_the_wait_it_is_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The wait's subscription filter, as Prefect's server applies it to live events.
    seen: dict[str, Any] = {}
    monkeypatch.setattr(hot_wait, "get_events_subscriber", fake_stream([], seen=seen))
    run_id = uuid4()
    await hot_wait._follow_run_events(run_id, hot_wait.StateChanges())
    sent = seen["filter"].model_dump()
    # As Prefect's subscriber sends it: the last minute, and a year ahead.
    now = datetime.now(UTC)
    sent["occurred"] = {"since": now - timedelta(minutes=1), "until": now + timedelta(days=365)}
    server_filter = ServerEventFilter.model_validate(sent)

    def event(name: str, run: UUID = run_id) -> ServerEvent:
        return ServerEvent(
            occurred=datetime.now(UTC),
            event=name,
            resource={"prefect.resource.id": f"prefect.flow-run.{run}"},
            id=uuid4(),
        )

    assert server_filter.includes(event(HOT_WAIT_END_REQUESTED))
    assert server_filter.includes(event("prefect.flow-run.Running"))
    assert not server_filter.includes(event("prefect.flow-run.heartbeat"))
    assert not server_filter.includes(event(HOT_WAIT_END_REQUESTED, uuid4()))  # another run
