"""A stopping serving process asks its hot waits to suspend before Prefect cancels its runs."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.states import Paused, Running, Suspended

from deployments import hand_over
from deployments.hand_over import HandingOverRunner, hand_over_hot_waits, waits_hot
from flows.steps.hot_wait import HOT_WAIT_END_REQUESTED


class FakePrefect:
    """The runs' states; a read of an unknown run fails as a lost answer would."""

    def __init__(self, states: dict[UUID, Any]) -> None:
        self.states = states

    async def read_flow_run(self, flow_run_id: UUID) -> Any:
        if flow_run_id not in self.states:
            raise OSError("connection reset")
        return SimpleNamespace(id=flow_run_id, state=self.states[flow_run_id])


class Processes:
    """The serving process's record of the runs it holds; hot waits end once asked."""

    def __init__(self, run_ids: set[UUID], *, ending: bool = True) -> None:
        self.held = set(run_ids)
        self.ending = ending
        self.asked: list[UUID] = []

    def __call__(self) -> set[UUID]:
        return set(self.held)

    def events_client(self) -> Any:
        processes = self

        class Events:
            async def __aenter__(self) -> Events:
                return self

            async def __aexit__(self, *_: object) -> None: ...

            async def emit(self, event: Any) -> None:
                assert event.event == HOT_WAIT_END_REQUESTED
                run_id = UUID(event.resource.id.removeprefix("prefect.flow-run."))
                processes.asked.append(run_id)
                if processes.ending:
                    processes.held.discard(run_id)  # it suspends, its process ends

        return Events()


def test_only_a_pause_in_the_runs_own_process_is_a_hot_wait() -> None:
    assert waits_hot(SimpleNamespace(state=Paused(reschedule=False)))  # type: ignore[arg-type]
    assert not waits_hot(SimpleNamespace(state=Suspended()))  # type: ignore[arg-type]
    assert not waits_hot(SimpleNamespace(state=Running()))  # type: ignore[arg-type]
    assert not waits_hot(SimpleNamespace(state=None))  # type: ignore[arg-type]


async def test_the_hot_waits_are_asked_to_suspend_and_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hot, suspended, running, unreadable = uuid4(), uuid4(), uuid4(), uuid4()
    prefect = FakePrefect(
        {hot: Paused(reschedule=False), suspended: Suspended(), running: Running()}
    )
    processes = Processes({hot, suspended, running, unreadable})
    monkeypatch.setattr(hand_over, "get_events_client", processes.events_client)
    left = await hand_over_hot_waits(prefect, processes, timeout=5)  # type: ignore[arg-type]
    assert left == set()
    # Only the hot wait is asked; the others are left to the runner, as before.
    assert processes.asked == [hot]
    assert processes() == {suspended, running, unreadable}


async def test_a_hot_wait_that_does_not_suspend_in_time_is_left_to_the_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hot = uuid4()
    processes = Processes({hot}, ending=False)
    monkeypatch.setattr(hand_over, "get_events_client", processes.events_client)
    monkeypatch.setattr(hand_over, "POLL_SECONDS", 0.01)
    prefect = FakePrefect({hot: Paused(reschedule=False)})
    left = await hand_over_hot_waits(prefect, processes, timeout=0.1)  # type: ignore[arg-type]
    assert left == {hot} and processes.asked == [hot]


async def test_nothing_is_asked_when_no_run_waits_hot(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_events() -> Any:
        raise AssertionError("no event is sent")

    monkeypatch.setattr(hand_over, "get_events_client", no_events)
    running = uuid4()
    prefect = FakePrefect({running: Running()})
    assert await hand_over_hot_waits(prefect, lambda: {running}) == set()  # type: ignore[arg-type]


@pytest.mark.parametrize("stopping", [True, False])
async def test_the_runner_hands_over_only_when_it_stops(
    monkeypatch: pytest.MonkeyPatch, stopping: bool
) -> None:
    order: list[str] = []

    async def handed_over(client: Any, in_flight: Any, **_: Any) -> set[UUID]:
        order.append("hand over")
        return set()

    async def cancelled(self: Any) -> None:
        order.append("cancel")

    monkeypatch.setattr(hand_over, "get_client", lambda: contextlib.nullcontext())
    monkeypatch.setattr(hand_over, "hand_over_hot_waits", handed_over)
    monkeypatch.setattr(hand_over.Runner, "cancel_all", cancelled)
    runner = object.__new__(HandingOverRunner)  # no Prefect client or server behind it
    runner.stopping = stopping
    await runner.cancel_all()
    assert order == (["hand over", "cancel"] if stopping else ["cancel"])
