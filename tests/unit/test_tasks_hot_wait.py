"""The hot wait against Prefect's own server: suspended from its start, taken back once.

A run of a deployment (nothing serves it: the test is its only process) waits hot, and
the test plays the person, a runner, a canceller and a stopping worker around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import (
    ConcurrencyLimitStrategy,
    ConcurrencyOptions,
    FlowRun,
    StateType,
)
from prefect.exceptions import Abort, ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Cancelling, Pending, Running
from prefect.utilities.engine import propose_state

from flows.steps import hot_wait
from flows.steps.consent import AuthorizationAnswer
from flows.steps.hot_wait import HandedBack, HotWaitSettings

pytestmark = pytest.mark.usefixtures("prefect_harness")

KEY = "authorization-1-hot"
SETTINGS = HotWaitSettings(seconds=30, poll_seconds=0.2)


class Slot:
    """A hot-wait slot that records whether it was given back."""

    def __init__(self) -> None:
        self.released = False

    async def release(self) -> None:
        self.released = True


@flow
def hot_wait_flow() -> None:
    """The deployment's flow (never run: the test stands in for its process)."""


@pytest.fixture(autouse=True)
def _run_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hot_wait, "get_run_logger", lambda: logging.getLogger("hot-wait-test"))


@pytest.fixture
async def prefect() -> AsyncIterator[PrefectClient]:
    async with get_client() as client:
        yield client


@pytest.fixture
async def running(prefect: PrefectClient) -> FlowRun:
    """A run of a deployment, Running, as when its process reaches the wait."""
    flow_id = await prefect.create_flow(hot_wait_flow)
    deployment_id = await prefect.create_deployment(flow_id, f"hot-{uuid4().hex[:8]}")
    run = await prefect.create_flow_run_from_deployment(deployment_id)
    await prefect.set_flow_run_state(run.id, Pending(), force=True)
    await prefect.set_flow_run_state(run.id, Running(), force=True)
    return await prefect.read_flow_run(run.id)


def wait(run: FlowRun, slot: Slot, *, window: float = 30) -> asyncio.Task[Any]:
    async def waiting() -> Any:
        async with get_client() as client:
            return await hot_wait._wait_suspended_in_process(
                AuthorizationAnswer,
                client=client,
                run=run,
                key=KEY,
                window=window,
                timeout=3600,
                settings=SETTINGS,
                slot=slot,  # type: ignore[arg-type]
            )

    return asyncio.create_task(waiting())


class Parent:
    """This process's parent pid as the hot wait sees it; `die()` orphans the process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, check_seconds: float) -> None:
        self.pid = os.getppid()
        monkeypatch.setattr(hot_wait, "SUPERVISION_CHECK_SECONDS", check_seconds)
        monkeypatch.setattr(os, "getppid", lambda: self.pid)

    def die(self) -> None:
        self.pid = 1  # reparented to init


async def until_suspended(prefect: PrefectClient, run_id: UUID) -> None:
    """Until the run waits under the hot wait's pause, its form stored."""
    for _ in range(200):
        state = (await prefect.read_flow_run(run_id)).state
        if state is not None and state.is_paused():
            keyset = state.state_details.run_input_keyset or {}
            with contextlib.suppress(ObjectNotFound, PrefectHTTPStatusError):  # not yet stored
                if await prefect.read_flow_run_input(run_id, keyset["schema"]):
                    await asyncio.sleep(0.3)  # the wait follows its stream
                    return
        await asyncio.sleep(0.05)
    raise AssertionError("the run never waited")


async def names(prefect: PrefectClient, run_id: UUID) -> list[str]:
    states = await prefect.read_flow_run_states(run_id)
    return [s.name or "" for s in sorted(states, key=lambda s: s.timestamp)]


async def test_the_wait_is_a_suspension_and_an_answer_is_taken_back_by_this_process(
    prefect: PrefectClient, running: FlowRun
) -> None:
    slot = Slot()
    waiting = wait(running, slot)
    await until_suspended(prefect, running.id)
    state = (await prefect.read_flow_run(running.id)).state
    # Were this process gone, the resume would schedule the run again for a runner.
    assert state is not None and state.state_details.pause_reschedule
    assert state.state_details.pause_key == KEY
    resumed = await prefect.resume_flow_run(running.id, run_input={"code": "c0de", "state": "s"})
    assert resumed.state is not None and resumed.state.name == "Resuming"
    answer = await asyncio.wait_for(waiting, 30)
    assert isinstance(answer, AuthorizationAnswer) and answer.code == "c0de"
    assert (await prefect.read_flow_run(running.id)).state.is_running()  # type: ignore[union-attr]
    assert (await names(prefect, running.id))[-3:] == ["Resuming", "Pending", "Running"]


async def test_at_the_windows_end_the_run_is_left_suspended_untouched(
    prefect: PrefectClient, running: FlowRun
) -> None:
    slot = Slot()
    handed = await asyncio.wait_for(wait(running, slot, window=1), 30)
    assert isinstance(handed, HandedBack) and handed.suspended
    current = await prefect.read_flow_run(running.id)
    assert current.state is not None and current.state.id == handed.state.id
    assert current.state.state_details.pause_reschedule


@pytest.mark.parametrize("claimant", ["runner", "retried claim of this process"])
async def test_a_resumed_run_is_taken_by_exactly_one_process(
    prefect: PrefectClient, running: FlowRun, claimant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A runner's poll may find the resumed run before the waiting process claims it.
    # Prefect accepts Pending for one of them only; the waiting process recognises its
    # own claim when Prefect's client sent it twice (an answer lost on the way back).
    slot = Slot()
    waiting = wait(running, slot)
    await until_suspended(prefect, running.id)
    transition = uuid4()
    if claimant == "runner":
        waiting.cancel()  # the runner wins the race: the wait claims only afterwards
        await asyncio.gather(waiting, return_exceptions=True)
        await prefect.resume_flow_run(running.id, run_input={"code": "c0de"})
        runner_claim = await propose_state(prefect, Pending(), flow_run_id=running.id)
        assert runner_claim.is_pending()
        resumed = (await prefect.read_flow_run(running.id)).state
        assert resumed is not None
        assert await hot_wait._take_back(prefect, running.id, resumed=resumed) is not None
        current = await prefect.read_flow_run(running.id)
        assert current.state is not None and current.state.type is StateType.PENDING
        return
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await prefect.resume_flow_run(running.id, run_input={"code": "c0de"})
    # The claim's first request landed and its answer was lost; Prefect's client sends
    # the same request again (the same transition id).
    real_uuid4 = uuid.uuid4
    ids = iter([transition, transition])  # the claim, twice; then the proposal of Running
    with monkeypatch.context() as same_request:
        same_request.setattr(uuid, "uuid4", lambda: next(ids, None) or real_uuid4())
        assert (await propose_state(prefect, Pending(), flow_run_id=running.id)).is_pending()
        resumed = (await prefect.read_flow_run(running.id)).state
        assert resumed is not None
        assert await hot_wait._take_back(prefect, running.id, resumed=resumed) is None
    assert (await prefect.read_flow_run(running.id)).state.is_running()  # type: ignore[union-attr]
    # A runner after it finds the run taken.
    with pytest.raises(Abort, match="RUNNING"):
        await propose_state(prefect, Pending(), flow_run_id=running.id)


@pytest.mark.parametrize(
    ("strategy", "left_in", "says", "answer_kept"),
    [
        (
            ConcurrencyLimitStrategy.ENQUEUE,
            StateType.SCHEDULED,
            "concurrency limit has no free",
            True,
        ),
        (
            ConcurrencyLimitStrategy.CANCEL_NEW,
            StateType.CANCELLED,
            "cancelled as it was resumed",
            False,
        ),
    ],
)
async def test_a_claim_refused_for_the_deployments_concurrency_limit_says_so(
    prefect: PrefectClient,
    caplog: pytest.LogCaptureFixture,
    strategy: ConcurrencyLimitStrategy,
    left_in: StateType,
    says: str,
    answer_kept: bool,
) -> None:
    # The deployment's only slot is taken by another of its runs when the answered run
    # is claimed: Prefect refuses the claim (Scheduled to wait for a slot, or Cancelled),
    # and the run's log says so, not that the run waits suspended. A run that ends there
    # never reads its answer: the code is not left stored in plain text.
    flow_id = await prefect.create_flow(hot_wait_flow)
    deployment_id = await prefect.create_deployment(
        flow_id,
        f"limited-{uuid4().hex[:8]}",
        concurrency_limit=1,
        concurrency_options=ConcurrencyOptions(collision_strategy=strategy),
    )
    answered = await prefect.create_flow_run_from_deployment(deployment_id)
    await prefect.set_flow_run_state(answered.id, Pending(), force=True)  # holds no slot
    await prefect.set_flow_run_state(answered.id, Running(), force=True)
    answered = await prefect.read_flow_run(answered.id)
    with caplog.at_level(logging.INFO, logger="hot-wait-test"):
        waiting = wait(answered, Slot())
        await until_suspended(prefect, answered.id)
        occupant = await prefect.create_flow_run_from_deployment(deployment_id)
        assert (await propose_state(prefect, Pending(), flow_run_id=occupant.id)).is_pending()
        await prefect.resume_flow_run(answered.id, run_input={"code": "c0de"})
        left = await asyncio.wait_for(waiting, 30)
    assert isinstance(left, HandedBack), left
    state = (await prefect.read_flow_run(answered.id)).state
    assert state is not None and state.type is left_in, state
    assert left.suspended is answer_kept and left.explained is answer_kept
    said = [record.getMessage() for record in caplog.records if record.name == "hot-wait-test"]
    assert [line for line in said if says in line], said
    assert not [line for line in said if "elsewhere" in line or "took the resumed" in line]
    keyset = hot_wait._hot_keyset(KEY)
    try:
        stored = await prefect.read_flow_run_input(answered.id, keyset["response"])
    except (ObjectNotFound, PrefectHTTPStatusError):
        stored = None
    assert (stored is not None) is answer_kept, stored


@pytest.mark.parametrize("force", [False, True])
async def test_a_cancelled_run_is_left_cancelled_and_its_slot_given_back(
    prefect: PrefectClient, running: FlowRun, force: bool
) -> None:
    slot = Slot()
    waiting = wait(running, slot)
    await until_suspended(prefect, running.id)
    # A cancel of a suspended run, the UI's (forced) too: Prefect makes it Cancelled at
    # once, without asking a runner to end its process (the wait ends by itself).
    cancelled = await prefect.set_flow_run_state(running.id, Cancelling(), force=force)
    assert cancelled.state is not None and cancelled.state.type is StateType.CANCELLED
    handed = await asyncio.wait_for(waiting, 30)
    assert isinstance(handed, HandedBack) and not handed.suspended
    assert slot.released
    current = await prefect.read_flow_run(running.id)
    assert current.state is not None and current.state.type is StateType.CANCELLED


async def test_a_sigterm_ends_the_wait_and_leaves_the_run_suspended(
    prefect: PrefectClient, running: FlowRun
) -> None:
    # A worker or serving process stopping, a container stopped: the run's process gets
    # SIGTERM. Prefect's handler would report the run Crashed.
    delivered: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: delivered.append(signum))
    try:
        waiting = wait(running, Slot())
        await until_suspended(prefect, running.id)
        os.kill(os.getpid(), signal.SIGTERM)
        handed = await asyncio.wait_for(waiting, 10)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert isinstance(handed, HandedBack) and handed.suspended
    assert delivered == []
    current = await prefect.read_flow_run(running.id)
    assert current.state is not None and current.state.state_details.pause_reschedule


async def test_a_failure_while_watching_leaves_the_run_suspended(
    prefect: PrefectClient, running: FlowRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 500 from Prefect, or an outage longer than its client's retries: the run is
    # suspended already, so the process ends and the answer resumes the run elsewhere.
    waiting = wait(running, Slot())
    await until_suspended(prefect, running.id)

    async def refused(self: PrefectClient, flow_run_id: UUID) -> FlowRun:
        raise httpx.HTTPStatusError(
            "500", request=httpx.Request("GET", "/"), response=httpx.Response(500)
        )

    monkeypatch.setattr(PrefectClient, "read_flow_run", refused)
    await prefect.resume_flow_run(running.id, run_input={"code": "c0de"})
    handed = await asyncio.wait_for(waiting, 30)
    monkeypatch.undo()
    assert isinstance(handed, HandedBack) and handed.suspended
    current = await prefect.read_flow_run(running.id)
    assert current.state is not None and current.state.name == "Resuming"


async def test_an_orphaned_process_ends_its_wait_and_leaves_the_answer_to_the_next_one(
    prefect: PrefectClient, running: FlowRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its worker was killed alone (`kill -9` of its pid, an out-of-memory kill): the
    # process is orphaned, with nobody to stop or report it.
    parent = Parent(monkeypatch, check_seconds=0.05)
    waiting = wait(running, Slot())
    await until_suspended(prefect, running.id)
    parent.die()
    handed = await asyncio.wait_for(waiting, 10)
    assert isinstance(handed, HandedBack) and handed.suspended
    current = await prefect.read_flow_run(running.id)
    assert current.state is not None and current.state.id == handed.state.id


async def test_an_answer_right_after_the_worker_died_is_not_taken_by_the_orphan(
    prefect: PrefectClient, running: FlowRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The resume lands before the periodic look sees the worker gone: the claim looks
    # first, and leaves the resumed run to whichever runner or worker is up.
    parent = Parent(monkeypatch, check_seconds=3600)
    waiting = wait(running, Slot())
    await until_suspended(prefect, running.id)
    parent.die()
    await prefect.resume_flow_run(running.id, run_input={"code": "c0de"})
    handed = await asyncio.wait_for(waiting, 10)
    assert isinstance(handed, HandedBack) and handed.suspended
    current = await prefect.read_flow_run(running.id)
    assert current.state is not None and current.state.name == "Resuming"
    assert (await names(prefect, running.id))[-1] == "Resuming"


def test_a_prefect_release_without_its_private_function_turns_hot_waits_off() -> None:
    # The hot wait ends its process through a private Prefect function; a release that
    # moves it must leave authorizations working, suspended at once.
    check = (
        "import prefect.flow_runs\n"  # Prefect's own users of it, imported as they are
        "import prefect._flow_run_suspension as moved\n"
        "del moved.mark_flow_run_suspension_requested\n"
        "from flows.steps import hot_wait\n"
        "assert not hot_wait.hot_waits_supported()\n"
        "assert not hot_wait.HotWaitSettings(seconds=30).enabled\n"
    )
    ran = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert hot_wait.hot_waits_supported() and HotWaitSettings(seconds=30).enabled
