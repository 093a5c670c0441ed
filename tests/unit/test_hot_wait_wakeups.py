"""The hot wait's wake-ups: Prefect's event stream wakes it at once, polling covers its absence."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import anyio
import pytest

from flows.steps import hot_wait
from flows.steps.hot_wait import (
    HOT_WAIT_END_REQUESTED,
    RECHECK_SECONDS,
    STREAM_BACKSTOP_SECONDS,
    HotWaitSettings,
    StateChanges,
    next_read_in,
)


async def test_a_change_wakes_the_wait_at_once() -> None:
    changes = StateChanges()
    async with anyio.create_task_group() as group:
        group.start_soon(_notify_after, changes, 0.05)
        started = time.monotonic()
        assert await changes.wait(30) is True
    assert time.monotonic() - started < 5


async def test_without_a_change_the_wait_ends_at_its_timeout() -> None:
    changes = StateChanges()
    started = time.monotonic()
    assert await changes.wait(0.2) is False
    assert 0.2 <= time.monotonic() - started < 5


async def test_a_change_while_the_state_is_read_is_kept_for_the_next_wait() -> None:
    changes = StateChanges()
    changes.notify()  # arrived while the caller was reading the run's state
    started = time.monotonic()
    await changes.wait(30)
    assert time.monotonic() - started < 5
    # Seen once: the next wait sleeps again until a change or its timeout.
    started = time.monotonic()
    await changes.wait(0.2)
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("failure", [OSError("refused"), TimeoutError(), RuntimeError("auth")])
async def test_an_unavailable_event_stream_leaves_the_wait_to_polling(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    class Unavailable:
        def __init__(self, **_: Any) -> None: ...

        async def __aenter__(self) -> Unavailable:
            raise failure

        async def __aexit__(self, *_: object) -> None: ...

    monkeypatch.setattr(hot_wait, "get_events_subscriber", Unavailable)
    changes = StateChanges()
    await hot_wait._follow_run_events(uuid4(), changes)  # returns, raises nothing
    assert changes.connected_for() is None
    started = time.monotonic()
    assert await changes.wait(0.2) is False  # no wake-up: the poll interval bounds the wait
    assert 0.2 <= time.monotonic() - started < 5


def test_reads_are_a_backstop_while_the_stream_is_connected_and_polls_while_not() -> None:
    settings = HotWaitSettings(poll_seconds=1.0)
    assert next_read_in(0, connected_for=5.0, settings=settings) == STREAM_BACKSTOP_SECONDS
    assert next_read_in(0, connected_for=None, settings=settings) == 1.0
    # Just (re)connected: one more poll covers an event sent just before the connection.
    assert next_read_in(0, connected_for=0.2, settings=settings) == 1.0
    # Right after an event, the state is read again soon whatever the stream does.
    assert next_read_in(3, connected_for=5.0, settings=settings) == RECHECK_SECONDS
    assert settings.poll_seconds < STREAM_BACKSTOP_SECONDS


async def test_a_stream_that_breaks_wakes_the_wait_back_to_polling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen_connected: list[bool] = []
    changes = StateChanges()

    class Breaks:
        def __init__(self, **_: Any) -> None: ...

        async def __aenter__(self) -> Breaks:
            return self

        async def __aexit__(self, *_: object) -> None: ...

        def __aiter__(self) -> Breaks:
            return self

        async def __anext__(self) -> object:
            seen_connected.append(changes.connected_for() is not None)
            raise ConnectionResetError("gone")

    monkeypatch.setattr(hot_wait, "get_events_subscriber", Breaks)
    await hot_wait._follow_run_events(uuid4(), changes)
    assert seen_connected == [True]  # connected while the stream was up
    assert changes.connected_for() is None
    started = time.monotonic()
    assert await changes.wait(30) is True  # the sleeping wait is woken to poll again
    assert time.monotonic() - started < 5


async def test_every_event_of_the_run_wakes_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    stream = fake_stream([state_event("Running"), state_event("Cancelling")], seen=seen)
    monkeypatch.setattr(hot_wait, "get_events_subscriber", stream)
    run_id = uuid4()
    changes = StateChanges()
    await hot_wait._follow_run_events(run_id, changes)
    assert seen["filter"].resource.id == [f"prefect.flow-run.{run_id}"]
    # The replayed minute before the wait and the heartbeats do not wake it; a resume does.
    ignored = seen["filter"].event.exclude_name
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Paused"} <= set(ignored)
    assert "prefect.flow-run.Running" not in ignored
    started = time.monotonic()
    await changes.wait(30)
    assert time.monotonic() - started < 5


def state_event(name: str, occurred: datetime | None = None) -> SimpleNamespace:
    """An event of the stream, as the wait reads it."""
    if name != HOT_WAIT_END_REQUESTED:
        name = f"prefect.flow-run.{name}"
    return SimpleNamespace(event=name, occurred=occurred or datetime.now(UTC))


async def _notify_after(changes: StateChanges, seconds: float) -> None:
    await anyio.sleep(seconds)
    changes.notify()


def fake_stream(events: list[object], *, seen: dict[str, Any] | None = None) -> type:
    """Prefect's event subscriber, sending `events` then ending (records its filter in `seen`)."""

    class Stream:
        def __init__(self, *, filter: Any = None, **_: Any) -> None:
            if seen is not None:
                seen["filter"] = filter

        async def __aenter__(self) -> Any:
            return self

        async def __aexit__(self, *_: object) -> None: ...

        def __aiter__(self) -> Any:
            self.left = list(events)
            return self

        async def __anext__(self) -> object:
            if not self.left:
                raise StopAsyncIteration
            return self.left.pop(0)

    return Stream


async def test_the_replayed_start_of_the_run_does_not_wake_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The stream replays the last minute first: the run's own Running state from before
    # its pause would otherwise wake it into a burst of reads.
    paused_at = datetime.now(UTC)
    replayed = state_event("Running", paused_at - timedelta(seconds=2))
    resumed = state_event("Running", paused_at + timedelta(seconds=1))

    # The stream's end wakes the wait once (back to polling); only `resumed` adds a wake-up.
    for events, wakes in (([replayed], 1), ([replayed, resumed], 2)):
        monkeypatch.setattr(hot_wait, "get_events_subscriber", fake_stream(events))
        changes = StateChanges()
        woken: list[bool] = []
        notify = changes.notify
        monkeypatch.setattr(
            changes, "notify", lambda woken=woken, notify=notify: (woken.append(True), notify())
        )
        await hot_wait._follow_run_events(uuid4(), changes, since=paused_at)
        assert len(woken) == wakes


async def test_an_end_request_ends_the_wait_now_and_one_for_an_earlier_wait_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A serving process that stops asks its hot waits to suspend at once; a request
    # replayed from before this pause was meant for an earlier wait of the run.
    paused_at = datetime.now(UTC)
    earlier = state_event(HOT_WAIT_END_REQUESTED, paused_at - timedelta(seconds=5))
    now = state_event(HOT_WAIT_END_REQUESTED, paused_at + timedelta(seconds=1))
    seen: dict[str, Any] = {}
    for events, ended in (([earlier], False), ([earlier, now], True)):
        monkeypatch.setattr(hot_wait, "get_events_subscriber", fake_stream(events, seen=seen))
        changes = StateChanges()
        await hot_wait._follow_run_events(uuid4(), changes, since=paused_at)
        assert changes.end_requested is ended
    assert HOT_WAIT_END_REQUESTED in seen["filter"].event.prefix
    started = time.monotonic()
    assert await changes.wait(30) is True  # the waiting loop wakes at once and ends
    assert time.monotonic() - started < 5
