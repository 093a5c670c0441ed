"""The callback receiver against an in-memory Prefect: outcomes, pages, limits, hostile input."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect.client.schemas.objects import FlowRun, State
from prefect.client.schemas.responses import (
    OrchestrationResult,
    SetStateStatus,
    StateAbortDetails,
    StateAcceptDetails,
    StateRejectDetails,
)
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.input.run_input import keyset_from_paused_state
from prefect.states import Cancelled, Completed, Failed, Paused, Running, Scheduled, Suspended

from callback_receiver.app import create_app
from callback_receiver.inflight import InFlightCallbacks, callback_key
from callback_receiver.limits import ClientRateLimiter, InProgressLimit
from callback_receiver.outcomes import CallbackResult, Outcome
from callback_receiver.resumer import Resumer, max_prefect_requests, poll_delays
from callback_receiver.settings import ReceiverSettings
from callback_receiver.signing import SignerSource
from open_connectors import StateSigner, code_digest, used_code_key
from open_connectors.authorization import marker_is_for_wait, used_code_marker
from tests.states import client_secret_state

KEY = "receiver-state-key-0123456789"
SIGNER = StateSigner(KEY)
CLIENT_SECRET = "oauth-app-secret"
CODE = "the-authorization-code"
UI = "http://127.0.0.1:4200"


def waiting_state(key: str = "authorization-1", timeout: int = 600) -> State:
    state = Suspended(timeout_seconds=timeout, pause_key=key)
    state.state_details.run_input_keyset = keyset_from_paused_state(state)
    return state


def hot_waiting_state(key: str = "authorization-1") -> State:
    """The hot wait of a prompt: paused in the run's process before it suspends."""
    state = Paused(timeout_seconds=600, reschedule=False, pause_key=f"{key}-hot")
    state.state_details.run_input_keyset = keyset_from_paused_state(state)
    return state


def _status_error(status: int) -> PrefectHTTPStatusError:
    request = httpx.Request("GET", "http://prefect.test/api")
    response = httpx.Response(status, request=request)
    return PrefectHTTPStatusError(f"HTTP {status}", request=request, response=response)


class FakePrefect:
    """The Prefect API calls the receiver makes, over in-memory runs; every call is logged."""

    def __init__(self) -> None:
        self.runs: dict[UUID, FlowRun] = {}
        self.history: dict[UUID, list[State]] = {}
        self.inputs: dict[tuple[UUID, str], str] = {}
        self.resumes: list[tuple[UUID, dict[str, Any]]] = []
        self.answers: list[OrchestrationResult] = []
        self.calls: list[str] = []
        self.on_read: Callable[[FlowRun], None] | None = None
        self.gate: asyncio.Event | None = None
        # Resume requests that fail, each True when it took all the same.
        self.resume_failures: list[bool] = []
        self.on_resume_failure: Callable[[], object] | None = None
        # Removals of run input that fail, each True when it went through all the same,
        # and the error they end in.
        self.delete_failures: list[bool] = []
        self.delete_error: Callable[[], Exception] = lambda: httpx.ReadTimeout("no answer")

    def add_run(self, state: State, *, schema_stored: bool = True, **parameters: Any) -> FlowRun:
        run = FlowRun(
            id=uuid4(),
            flow_id=uuid4(),
            parameters={"instance_name": "Acme ERP", **parameters},
            state=state,
        )
        self.runs[run.id] = run
        self.history[run.id] = [state]
        if schema_stored:
            self.store_schema(run)
        return run

    def store_schema(self, run: FlowRun) -> None:
        keyset = run.state.state_details.run_input_keyset if run.state else None
        if keyset:
            self.inputs[(run.id, keyset["schema"])] = "{}"

    def set_state(self, run: FlowRun, state: State) -> None:
        run.state = state
        self.history[run.id].append(state)

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        self.calls.append("read_flow_run")
        if self.gate is not None:
            await self.gate.wait()
        if flow_run_id not in self.runs:
            raise ObjectNotFound(http_exc=Exception("missing"))
        run = self.runs[flow_run_id]
        if self.on_read:
            self.on_read(run)
        return run

    async def read_flow_run_states(self, flow_run_id: UUID) -> list[State]:
        self.calls.append("read_flow_run_states")
        return list(self.history[flow_run_id])

    async def read_flow_run_input(self, flow_run_id: UUID, key: str) -> str:
        self.calls.append("read_flow_run_input")
        if (flow_run_id, key) not in self.inputs:
            raise _status_error(404)
        return self.inputs[(flow_run_id, key)]

    async def create_flow_run_input(
        self, flow_run_id: UUID, key: str, value: str, sender: str | None = None
    ) -> None:
        self.calls.append("create_flow_run_input")
        await asyncio.sleep(0)  # let a concurrent callback interleave
        if (flow_run_id, key) in self.inputs:
            raise _status_error(409)
        self.inputs[(flow_run_id, key)] = value

    async def delete_flow_run_input(self, flow_run_id: UUID, key: str) -> None:
        self.calls.append("delete_flow_run_input")
        if self.delete_failures:
            if self.delete_failures.pop(0):
                self.inputs.pop((flow_run_id, key), None)
            raise self.delete_error()
        self.inputs.pop((flow_run_id, key), None)

    async def resume_flow_run(self, flow_run_id: UUID, run_input: dict[str, Any]) -> Any:
        self.calls.append("resume_flow_run")
        self.resumes.append((flow_run_id, run_input))
        if self.resume_failures:
            took = self.resume_failures.pop(0)
            if took:  # processed, but the answer to the request was lost
                keyset = self.runs[flow_run_id].state.state_details.run_input_keyset  # type: ignore[union-attr]
                self.inputs[(flow_run_id, keyset["response"])] = "{}"  # type: ignore[index]
                self.set_state(self.runs[flow_run_id], Scheduled(name="Resuming"))
            if self.on_resume_failure is not None:
                self.on_resume_failure()
            raise _status_error(503)
        if self.answers:
            return self.answers.pop(0)
        run = self.runs[flow_run_id]
        if run.state is None or not run.state.is_paused():
            return OrchestrationResult(
                state=None, status=SetStateStatus.ABORT, details=StateAbortDetails(reason="no")
            )
        self.set_state(run, Scheduled(name="Resuming"))
        run.empirical_policy.pause_keys = {"authorization-1"}
        return OrchestrationResult(
            state=run.state, status=SetStateStatus.ACCEPT, details=StateAcceptDetails()
        )

    async def api_healthcheck(self) -> None:
        return None


class Loader:
    """The state key block, as the receiver's signer source sees it."""

    def __init__(self, signer: StateSigner = SIGNER) -> None:
        self.signer = signer
        self.loads = 0

    async def __call__(self) -> StateSigner:
        self.loads += 1
        return self.signer


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
def prefect() -> FakePrefect:
    return FakePrefect()


def make_app(
    prefect: FakePrefect,
    *,
    wait_seconds: float = 1.0,
    loader: Loader | None = None,
    sleep: Any = no_sleep,
    **receiver: Any,
) -> Any:
    signers = SignerSource(loader or Loader(), min_reload_seconds=5)
    resumer = Resumer(prefect, signers=signers, wait_seconds=wait_seconds, sleep=sleep)  # type: ignore[arg-type]
    return create_app(ReceiverSettings(prefect_ui_url=UI, **receiver), resumer=resumer)


def client_of(app: Any, host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def callback(prefect: FakePrefect, params: Any, **options: Any) -> httpx.Response:
    async with client_of(make_app(prefect, **options)) as client:
        return await client.get("/oauth/callback", params=params)


def state_of(run: FlowRun, signer: StateSigner = SIGNER) -> str:
    return signer.sign(run.id)


def marker_of(run: FlowRun, code: str = CODE) -> tuple[UUID, str]:
    return (run.id, used_code_key(code_digest(SIGNER, code, state=state_of(run))))


def outcome(response: httpx.Response) -> str:
    marker = 'data-outcome="'
    start = response.text.index(marker) + len(marker)
    return response.text[start : response.text.index('"', start)]


# -- answers that resume ---------------------------------------------------------------


async def test_approval_resumes_the_waiting_run_and_marks_the_code_used(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(waiting_state())
    response = await callback(prefect, {"code": CODE, "state": state_of(run), "scope": "full"})
    assert response.status_code == 200 and outcome(response) == "authorized"
    assert "Acme ERP" in response.text
    assert f'href="{UI}/runs/flow-run/{run.id}"' in response.text
    assert prefect.resumes == [(run.id, {"code": CODE, "state": state_of(run)})]
    assert marker_of(run) in prefect.inputs
    assert CODE not in prefect.inputs[marker_of(run)]
    # The marker names the wait it was delivered to (the flow then accepts this answer).
    keyset = waiting_state().state_details.run_input_keyset
    assert keyset is not None
    assert marker_is_for_wait(prefect.inputs[marker_of(run)], keyset["response"])
    assert not marker_is_for_wait(
        prefect.inputs[marker_of(run)], "suspended-authorization-2-response"
    )
    assert CODE not in response.text and state_of(run) not in response.text
    assert response.headers["cache-control"] == "no-store"
    # Marker look-up, schema check, marker, resume: nothing else is read.
    assert prefect.calls == [
        "read_flow_run",
        "read_flow_run_input",
        "read_flow_run_input",
        "create_flow_run_input",
        "resume_flow_run",
    ]


async def test_refusal_resumes_with_the_error(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    response = await callback(
        prefect,
        {"error": "access_denied", "error_description": "User said no", "state": state_of(run)},
    )
    assert outcome(response) == "refused"
    assert prefect.resumes[0][1]["error"] == "access_denied"


# -- the state is verified first --------------------------------------------------------


@pytest.mark.parametrize(
    "make_state",
    [
        lambda run: (
            StateSigner("a-guessed-key-0123456789").sign(run.id)[:-43]
            + SIGNER.sign(run.id)[-43:].swapcase()
        ),
        lambda run: client_secret_state(run.id, CLIENT_SECRET),
        lambda run: f"{run.id.hex}.{SIGNER.current_key_id}.{'A' * 43}",
        lambda run: run.id.hex,
    ],
    ids=["altered", "client-secret", "forged-mac", "bare-id"],
)
async def test_a_forged_state_reads_nothing_and_resumes_nothing(
    prefect: FakePrefect, make_state: Callable[[FlowRun], str]
) -> None:
    run = prefect.add_run(waiting_state())
    response = await callback(prefect, {"code": CODE, "state": make_state(run)})
    assert response.status_code in (400, 410)
    assert outcome(response) in ("invalid", "key-retired")
    assert prefect.calls == []  # no read of the run, of an input, or of any block
    assert run.state is not None and run.state.is_paused()


async def test_a_state_signed_with_the_client_secret_in_the_new_form_is_refused(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(waiting_state())
    forged = StateSigner(CLIENT_SECRET).sign(run.id)
    response = await callback(prefect, {"code": CODE, "state": forged})
    assert response.status_code == 410 and outcome(response) == "key-retired"
    assert prefect.calls == [] and prefect.resumes == []


async def test_a_key_rotated_out_gets_a_clear_page_and_reloads_at_most_once(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(waiting_state())
    old_state = StateSigner("retired-state-key-0123456789").sign(run.id)
    loader = Loader()
    async with client_of(make_app(prefect, loader=loader)) as client:
        pages = [
            await client.get("/oauth/callback", params={"code": CODE, "state": old_state})
            for _ in range(3)
        ]
    for page in pages:
        assert page.status_code == 410 and outcome(page) == "key-retired"
        assert "rotated out" in page.text and "ask for a new link" in page.text
    assert loader.loads == 1  # first load; the reload interval has not passed
    assert prefect.calls == []


async def test_a_rotation_is_picked_up_by_a_reload(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    clock = [0.0]
    loader = Loader()
    signers = SignerSource(loader, min_reload_seconds=5, clock=lambda: clock[0])
    await signers.signer()
    rotated = StateSigner("rotated-state-key-0123456789", [KEY])
    loader.signer = rotated
    clock[0] = 6.0
    run_id, signer = await signers.verify(rotated.sign(run.id))
    assert run_id == run.id and signer is rotated and loader.loads == 2
    # The previous key's states still verify with the reloaded signer.
    assert (await signers.verify(SIGNER.sign(run.id)))[0] == run.id


async def test_a_burst_after_a_rotation_shares_one_reload_and_refuses_none(
    prefect: FakePrefect,
) -> None:
    """The callbacks that meet a new key while another one reloads verify with its reload."""
    runs = [prefect.add_run(waiting_state()) for _ in range(3)]
    clock = [0.0]
    loader = Loader()
    read_started, read_may_end = asyncio.Event(), asyncio.Event()
    read_may_end.set()

    async def block_read() -> StateSigner:
        read_started.set()
        await read_may_end.wait()
        return await loader()

    signers = SignerSource(block_read, min_reload_seconds=5, clock=lambda: clock[0])
    await signers.signer()
    rotated = StateSigner("rotated-state-key-0123456789", [KEY])
    loader.signer = rotated
    clock[0] = 6.0
    read_started.clear()
    read_may_end.clear()  # the reload's block read is in flight while the others arrive
    first = asyncio.create_task(signers.verify(rotated.sign(runs[0].id)))
    await read_started.wait()
    # These fail with the old signer now and wait for the reload in flight.
    others = [asyncio.create_task(signers.verify(rotated.sign(run.id))) for run in runs[1:]]
    await asyncio.sleep(0)
    read_may_end.set()
    verified = await asyncio.gather(first, *others)
    assert [run_id for run_id, _ in verified] == [run.id for run in runs]
    assert all(signer is rotated for _, signer in verified)
    assert loader.loads == 2  # the first load and one reload for the whole burst


# -- per wait ---------------------------------------------------------------------------


async def test_a_replayed_callback_is_already_used(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    params = {"code": CODE, "state": state_of(run)}
    assert outcome(await callback(prefect, params)) == "authorized"
    replay = await callback(prefect, params)
    assert replay.status_code == 409 and outcome(replay) == "already-used"
    prefect.set_state(run, Completed())
    assert outcome(await callback(prefect, params)) == "already-used"
    assert len(prefect.resumes) == 1


async def test_identical_concurrent_callbacks_resume_once(prefect: FakePrefect) -> None:
    # A double click, or a reload while the first is answered: one piece of work, whose
    # result every page shows.
    run = prefect.add_run(waiting_state())
    params = {"code": CODE, "state": state_of(run)}
    async with client_of(make_app(prefect)) as client:
        pages = await asyncio.gather(
            *(client.get("/oauth/callback", params=params) for _ in range(4))
        )
        assert [outcome(page) for page in pages] == ["authorized"] * 4
        # Replayed afterwards, it is told "already used" (it was answered within its page).
        replay = await client.get("/oauth/callback", params=params)
        assert replay.status_code == 409 and outcome(replay) == "already-used"
    assert len(prefect.resumes) == 1
    assert prefect.calls.count("create_flow_run_input") == 1


async def test_identical_callbacks_on_two_receivers_resume_once(prefect: FakePrefect) -> None:
    # Two receivers (or a restart) share nothing but Prefect: its unique marker decides.
    run = prefect.add_run(waiting_state())
    params = {"code": CODE, "state": state_of(run)}
    apps = [make_app(prefect) for _ in range(4)]
    clients = [client_of(app) for app in apps]
    try:
        pages = await asyncio.gather(
            *(client.get("/oauth/callback", params=params) for client in clients)
        )
    finally:
        for client in clients:
            await client.aclose()
    assert sorted(outcome(page) for page in pages) == ["already-used"] * 3 + ["authorized"]
    assert len(prefect.resumes) == 1


async def test_an_old_callback_never_resumes_a_later_wait(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    first = {"code": CODE, "state": state_of(run)}
    assert outcome(await callback(prefect, first)) == "authorized"
    # The run read an empty answer and waits again under a new key.
    prefect.set_state(run, waiting_state("authorization-2"))
    prefect.store_schema(run)
    replay = await callback(prefect, first)
    assert replay.status_code == 409 and outcome(replay) == "already-used"
    assert len(prefect.resumes) == 1
    fresh = await callback(prefect, {"code": "a-fresh-code", "state": state_of(run)})
    assert outcome(fresh) == "authorized" and len(prefect.resumes) == 2


async def test_a_callback_between_two_waits_waits_for_the_next_wait(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(Running())
    run.empirical_policy.pause_keys = {"authorization-1"}  # it has waited before
    reads = 0

    def wait_again_on_third_read(current: FlowRun) -> None:
        nonlocal reads
        reads += 1
        if reads == 3:
            prefect.set_state(current, waiting_state("authorization-2"))
            prefect.store_schema(current)

    prefect.on_read = wait_again_on_third_read
    response = await callback(prefect, {"code": CODE, "state": state_of(run)}, wait_seconds=5)
    assert response.status_code == 200 and outcome(response) == "authorized"
    assert len(prefect.resumes) == 1


async def test_an_early_callback_waits_until_the_form_is_stored(prefect: FakePrefect) -> None:
    run = prefect.add_run(Running())
    reads = 0

    def pause_then_store_form(current: FlowRun) -> None:
        nonlocal reads
        reads += 1
        if reads == 2:
            prefect.set_state(current, waiting_state())  # paused, form not stored yet
        if reads == 4:
            prefect.store_schema(current)

    prefect.on_read = pause_then_store_form
    response = await callback(prefect, {"code": CODE, "state": state_of(run)}, wait_seconds=5)
    assert outcome(response) == "authorized"
    assert len(prefect.resumes) == 1  # never resumed before the form existed


async def test_a_run_that_never_waits_backs_off_and_gets_a_reload_page(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(Running())
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    response = await callback(
        prefect, {"code": CODE, "state": state_of(run)}, wait_seconds=20, sleep=record
    )
    assert response.status_code == 503 and outcome(response) == "not-ready"
    assert slept == poll_delays(20) and slept[:4] == [0.25, 0.5, 1.0, 2.0]
    assert max(slept) == 2.0 and sum(slept) == pytest.approx(20)
    assert prefect.resumes == [] and marker_of(run) not in prefect.inputs
    assert len(prefect.calls) == 15


async def test_the_worst_case_request_count_is_bounded(prefect: FakePrefect) -> None:
    """Every resume aborts (another answer keeps winning): the documented bound holds."""
    run = prefect.add_run(waiting_state())
    abort = OrchestrationResult(
        state=None, status=SetStateStatus.ABORT, details=StateAbortDetails(reason="no")
    )
    prefect.answers.extend([abort] * 100)
    response = await callback(prefect, {"code": CODE, "state": state_of(run)}, wait_seconds=20)
    assert outcome(response) == "not-ready"
    assert marker_of(run) not in prefect.inputs  # removed after each refused resume
    assert len(prefect.calls) <= max_prefect_requests(20) == 114


async def test_a_refused_resume_removes_the_marker_so_a_reload_can_try_again(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(waiting_state())
    prefect.answers.append(
        OrchestrationResult(
            state=waiting_state(),
            status=SetStateStatus.REJECT,
            details=StateRejectDetails(reason="Validation failed for field 'code'"),
        )
    )
    params = {"code": CODE, "state": state_of(run)}
    first = await callback(prefect, params)
    assert first.status_code == 400 and outcome(first) == "invalid"
    assert marker_of(run) not in prefect.inputs
    assert outcome(await callback(prefect, params)) == "authorized"


# -- runs no longer waiting: decided from types and details, not words -------------------


def _expired_history(run: FlowRun, prefect: FakePrefect, message: str) -> None:
    paused = waiting_state(timeout=60)
    paused.timestamp = datetime.now(UTC) - timedelta(minutes=5)
    paused.state_details.pause_timeout = paused.timestamp + timedelta(seconds=60)
    failed = Failed(message=message)
    prefect.history[run.id] = [Running(), paused]
    prefect.set_state(run, failed)


async def test_a_run_failed_after_its_pause_timeout_is_expired_whatever_the_words(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(Running())
    _expired_history(run, prefect, "Das Warten ist abgelaufen.")  # no English marker
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 410 and outcome(response) == "expired"
    assert prefect.resumes == []


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        # Prefect's own expiry words, but no expired pause in the history: not "expired".
        (Failed(message="The flow was paused and never resumed."), "ended"),
        (Failed(message="StateMismatchError: ..."), "ended"),
        (Cancelled(), "ended"),
        (Completed(), "ended"),
    ],
)
async def test_runs_that_ended_otherwise(prefect: FakePrefect, state: State, expected: str) -> None:
    run = prefect.add_run(state)
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 409 and outcome(response) == expected
    assert prefect.resumes == []


async def test_an_expired_pause_refused_at_resume_is_expired(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    prefect.answers.append(
        OrchestrationResult(
            state=Failed(message="words do not matter"),
            status=SetStateStatus.REJECT,
            details=StateRejectDetails(reason="anything"),
        )
    )
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert outcome(response) == "expired"
    assert marker_of(run) not in prefect.inputs


async def test_an_unknown_run(prefect: FakePrefect) -> None:
    response = await callback(prefect, {"code": CODE, "state": SIGNER.sign(uuid4())})
    assert response.status_code == 404 and outcome(response) == "unknown"


# -- limits ------------------------------------------------------------------------------


async def test_repeated_requests_from_one_client_get_429_with_retry_after(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(Completed())
    params = {"code": CODE, "state": state_of(run)}
    app = make_app(prefect, client_burst=3, client_per_second=0.5)
    async with client_of(app, "203.0.113.7") as client:
        pages = [await client.get("/oauth/callback", params=params) for _ in range(4)]
    assert [page.status_code for page in pages] == [409, 409, 409, 429]
    assert outcome(pages[3]) == "busy" and pages[3].headers["retry-after"] == "2"
    async with client_of(app, "198.51.100.9") as other:  # another address is not limited
        assert (await other.get("/oauth/callback", params=params)).status_code == 409


async def test_callbacks_beyond_the_concurrency_bound_get_429(prefect: FakePrefect) -> None:
    runs = [prefect.add_run(waiting_state()) for _ in range(3)]
    prefect.gate = asyncio.Event()
    app = make_app(prefect, max_concurrent_callbacks=2)
    params = [{"code": CODE, "state": state_of(run)} for run in runs]
    async with client_of(app) as client:
        held = [asyncio.create_task(client.get("/oauth/callback", params=p)) for p in params[:2]]
        for _ in range(500):  # until both hold a place (bounded)
            if prefect.calls.count("read_flow_run") >= 2:
                break
            await asyncio.sleep(0.01)
        busy = await client.get("/oauth/callback", params=params[2])
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        # A reload of a callback in progress joins it: it takes no second place.
        joined = asyncio.create_task(client.get("/oauth/callback", params=params[0]))
        prefect.gate.set()
        done = await asyncio.gather(*held, joined)
        assert [outcome(page) for page in done] == ["authorized"] * 3
        assert outcome(await client.get("/oauth/callback", params=params[2])) == "authorized"
    assert len(prefect.resumes) == 3


def test_the_rate_limiter_refills_and_forgets_the_oldest_client() -> None:
    now = [0.0]
    limiter = ClientRateLimiter(burst=2, per_second=1, max_clients=2, clock=lambda: now[0])
    assert limiter.acquire("a") is None and limiter.acquire("a") is None
    assert limiter.acquire("a") == pytest.approx(1.0)
    now[0] = 1.0
    assert limiter.acquire("a") is None
    limiter.acquire("b")
    limiter.acquire("c")  # "a" is forgotten: at most two addresses are kept
    assert len(limiter._buckets) == 2 and "a" not in limiter._buckets


def test_the_in_progress_limit() -> None:
    limit = InProgressLimit(1)
    assert limit.try_enter() and not limit.try_enter()
    limit.leave()
    assert limit.try_enter()


# -- hostile input, pages, logs ---------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"code": CODE},
        {"state": "x"},
        {"code": CODE, "error": "access_denied", "state": "s"},
        [("code", "a"), ("code", "b"), ("state", "s")],
        {"code": "x" * 3000, "state": "s"},
        {"code": "a b", "state": "s"},
        {"code": CODE, "state": "infusionsofterp"},
        {"code": "<script>alert(1)</script>", "state": "s"},
    ],
)
async def test_malformed_callbacks_are_invalid_and_touch_nothing(
    prefect: FakePrefect, params: Any
) -> None:
    run = prefect.add_run(waiting_state())
    response = await callback(prefect, params)
    assert response.status_code == 400 and outcome(response) == "invalid"
    assert "<script>" not in response.text
    assert prefect.calls == [] and run.state is not None and run.state.is_paused()


async def test_no_code_state_or_key_in_pages_or_logs(
    prefect: FakePrefect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="callback_receiver")
    waiting = prefect.add_run(waiting_state())
    ended = prefect.add_run(Cancelled())
    pages = [
        await callback(prefect, {"code": CODE, "state": state_of(waiting)}),
        await callback(prefect, {"code": CODE, "state": state_of(waiting)}),
        await callback(prefect, {"code": CODE, "state": state_of(ended)}),
        await callback(prefect, {"code": CODE, "state": state_of(waiting)[:-2] + "xx"}),
        await callback(
            prefect, {"code": CODE, "state": StateSigner("old-key-0123456789").sign(waiting.id)}
        ),
    ]
    texts = [page.text for page in pages] + [caplog.text]
    for text in texts:
        for secret in (CODE, KEY, state_of(waiting), state_of(ended)):
            assert secret not in text


# -- a Prefect that answers slowly -------------------------------------------------------


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):  # bounded: 5 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def test_a_page_waits_a_bounded_time_while_prefect_holds_its_answers_back(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(waiting_state())
    prefect.gate = asyncio.Event()  # Prefect answers no read of the run
    app = make_app(prefect, answer_within_seconds=0.2)
    params = {"code": CODE, "state": state_of(run)}
    async with client_of(app) as client:
        started = asyncio.get_running_loop().time()
        page = await client.get("/oauth/callback", params=params)
        assert asyncio.get_running_loop().time() - started < 5
        assert page.status_code == 503 and outcome(page) == "working"
        assert page.headers["retry-after"] == "5"
        # A reload while it is still held joins the same work: nothing is sent twice.
        again = await client.get("/oauth/callback", params=params)
        assert outcome(again) == "working"
        assert prefect.calls.count("read_flow_run") == 1
        prefect.gate.set()  # Prefect answers again: the work goes on without any page
        await _until(lambda: len(prefect.resumes) == 1)
        done = await client.get("/oauth/callback", params=params)
        assert done.status_code == 200 and outcome(done) == "authorized"
    assert len(prefect.resumes) == 1
    assert prefect.calls.count("create_flow_run_input") == 1


async def test_work_going_on_after_its_page_still_holds_its_place(prefect: FakePrefect) -> None:
    runs = [prefect.add_run(waiting_state()) for _ in range(2)]
    prefect.gate = asyncio.Event()
    app = make_app(prefect, answer_within_seconds=0.1, max_concurrent_callbacks=1)
    first, second = ({"code": CODE, "state": state_of(run)} for run in runs)
    async with client_of(app) as client:
        assert outcome(await client.get("/oauth/callback", params=first)) == "working"
        busy = await client.get("/oauth/callback", params=second)
        assert busy.status_code == 429  # the first still works, with no page waiting
        prefect.gate.set()
        await _until(lambda: len(prefect.resumes) == 1)
        await asyncio.sleep(0)  # its task ends, and gives its place back
        assert outcome(await client.get("/oauth/callback", params=second)) == "authorized"


async def test_a_try_again_result_is_not_kept_so_a_reload_tries_again(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(Scheduled())  # not waiting yet: "not ready" after the callback's wait
    params = {"code": CODE, "state": state_of(run)}
    async with client_of(make_app(prefect, wait_seconds=0.5)) as client:
        assert outcome(await client.get("/oauth/callback", params=params)) == "not-ready"
        prefect.set_state(run, waiting_state())
        prefect.store_schema(run)
        assert outcome(await client.get("/oauth/callback", params=params)) == "authorized"
    assert len(prefect.resumes) == 1


async def test_work_that_fails_frees_its_place_and_is_not_kept(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    failures = [RuntimeError("bug")]

    def fail_once(_: FlowRun) -> None:
        if failures:
            raise failures.pop()

    prefect.on_read = fail_once
    app = make_app(prefect, max_concurrent_callbacks=1)
    params = {"code": CODE, "state": state_of(run)}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        assert (await client.get("/oauth/callback", params=params)).status_code == 500
        assert outcome(await client.get("/oauth/callback", params=params)) == "authorized"


async def test_only_work_that_outlived_its_page_is_remembered_for_a_while() -> None:
    now = [0.0]
    in_flight = InFlightCallbacks(
        answer_within=0.05,
        limit=InProgressLimit(4),
        remember_seconds=60,
        max_remembered=2,
        clock=lambda: now[0],
    )
    works: list[str] = []

    def work(name: str, seconds: float = 0.0) -> Callable[[], Any]:
        async def run() -> CallbackResult:
            works.append(name)
            await asyncio.sleep(seconds)
            return CallbackResult(Outcome.AUTHORIZED, flow_run_id=name)

        return run

    async def ended(name: str) -> None:
        await _until(lambda: name not in in_flight._running)

    # Answered within its page: not kept, a replay works again (and is told "already used").
    assert (await in_flight.answer("quick", work("quick"))).outcome is Outcome.AUTHORIZED
    await ended("quick")
    await in_flight.answer("quick", work("quick"))
    assert works == ["quick", "quick"]
    # Outlived its page: its reloads get its result, with no second piece of work.
    for name in ("a", "b", "c"):
        assert (await in_flight.answer(name, work(name, 0.2))).outcome is Outcome.WORKING
        await ended(name)
    assert (await in_flight.answer("c", work("c"))).flow_run_id == "c"
    assert (await in_flight.answer("b", work("b"))).flow_run_id == "b"
    assert works == ["quick", "quick", "a", "b", "c"]
    # Two kept at most: "a", the oldest, was forgotten and is worked on again.
    await in_flight.answer("a", work("a"))
    assert works[-1] == "a"
    now[0] = 61.0  # past a minute: forgotten
    await in_flight.answer("c", work("c"))
    assert works[-1] == "c"


async def test_the_work_key_keeps_no_code() -> None:
    from callback_receiver.query import Callback

    key = callback_key(Callback(state="s", code=CODE))
    assert CODE not in key and len(key) == 64
    assert key != callback_key(Callback(state="s", code=CODE + "x"))
    assert key != callback_key(Callback(state="t", code=CODE))


async def test_shutdown_waits_for_the_work_going_on(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    prefect.gate = asyncio.Event()
    app = make_app(prefect, answer_within_seconds=0.1)
    params = {"code": CODE, "state": state_of(run)}
    async with app.router.lifespan_context(app), client_of(app) as client:
        assert outcome(await client.get("/oauth/callback", params=params)) == "working"
        asyncio.get_running_loop().call_later(0.2, prefect.gate.set)
    assert len(prefect.resumes) == 1  # the shutdown waited for it


async def test_work_still_going_at_the_end_of_the_drain_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    held = asyncio.Event()
    in_flight = InFlightCallbacks(answer_within=0.01, limit=InProgressLimit(2))

    async def work() -> CallbackResult:
        await held.wait()
        return CallbackResult(Outcome.AUTHORIZED)

    assert (await in_flight.answer("k", work)).outcome is Outcome.WORKING
    with caplog.at_level(logging.WARNING, logger="callback_receiver"):
        assert await in_flight.drain(0.05) == 1
    assert "still being passed on" in caplog.text
    held.set()
    await _until(lambda: in_flight.running == 0)
    assert await in_flight.drain(0.05) == 0


async def test_a_page_cancelled_while_it_waits_leaves_the_result_to_its_reloads() -> None:
    held = asyncio.Event()
    in_flight = InFlightCallbacks(answer_within=30, limit=InProgressLimit(2))
    works: list[int] = []

    async def work() -> CallbackResult:
        works.append(1)
        await held.wait()
        return CallbackResult(Outcome.AUTHORIZED)

    page = asyncio.create_task(in_flight.answer("k", work))
    await _until(lambda: works == [1])
    page.cancel()
    with pytest.raises(asyncio.CancelledError):
        await page
    held.set()
    await _until(lambda: in_flight.running == 0)
    assert (await in_flight.answer("k", work)).outcome is Outcome.AUTHORIZED
    assert works == [1]  # the reload got the result, not a second piece of work


async def test_health(prefect: FakePrefect) -> None:
    async with client_of(make_app(prefect)) as client:
        response = await client.get("/health")
    assert response.json() == {"status": "ok", "prefect": "ok"}


_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(["code", "state", "error", "error_description", "scope", "x"]), _TEXT
        ),
        max_size=6,
    ),
    use_valid_state=st.booleans(),
)
async def test_any_query_gets_a_page_and_only_a_valid_state_resumes(
    pairs: list[tuple[str, str]], use_valid_state: bool
) -> None:
    prefect = FakePrefect()
    run = prefect.add_run(waiting_state())
    if use_valid_state:
        pairs = [(k, v) for k, v in pairs if k != "state"] + [("state", state_of(run))]
    response = await callback(prefect, pairs, wait_seconds=0.2)
    assert response.status_code in (200, 400, 404, 409, 410, 503)
    if not use_valid_state:
        assert prefect.calls == []
    for _, resumed_input in prefect.resumes:
        assert resumed_input["state"] == state_of(run)


async def test_a_resume_prefect_did_not_take_is_tried_again_within_the_callback(
    prefect: FakePrefect,
) -> None:
    # Prefect answered 503 (SQLite busy, after its client's own retries): nothing taken.
    run = prefect.add_run(waiting_state())
    prefect.resume_failures = [False, False]
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 200 and outcome(response) == "authorized"
    assert [resumed for resumed, _ in prefect.resumes] == [run.id] * 3
    assert marker_of(run) in prefect.inputs


async def test_a_resume_prefect_never_takes_leaves_the_code_usable_by_a_reload(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(waiting_state())
    prefect.resume_failures = [False] * 100
    params = {"code": CODE, "state": state_of(run)}
    first = await callback(prefect, params, wait_seconds=20)
    assert first.status_code == 503 and outcome(first) == "not-ready"
    assert marker_of(run) not in prefect.inputs
    assert len(prefect.calls) <= max_prefect_requests(20)
    prefect.resume_failures = []
    reload = await callback(prefect, params)
    assert reload.status_code == 200 and outcome(reload) == "authorized"


async def test_a_resume_that_took_but_lost_its_answer_is_never_sent_again(
    prefect: FakePrefect,
) -> None:
    run = prefect.add_run(waiting_state())
    prefect.resume_failures = [True]
    params = {"code": CODE, "state": state_of(run)}
    first = await callback(prefect, params)
    assert first.status_code == 503 and outcome(first) == "not-ready"
    assert marker_of(run) in prefect.inputs
    # The run is waiting again later (the form shown anew): a reload is still refused.
    prefect.set_state(run, waiting_state("authorization-2"))
    prefect.store_schema(run)
    reload = await callback(prefect, params)
    assert reload.status_code == 409 and outcome(reload) == "already-used"
    assert len(prefect.resumes) == 1


ABORT = OrchestrationResult(
    state=None, status=SetStateStatus.ABORT, details=StateAbortDetails(reason="switching")
)


async def test_a_marker_prefect_would_not_remove_still_delivers_its_code(
    prefect: FakePrefect,
) -> None:
    # The first resume comes while the run switches (ABORT) and the marker's removal
    # fails: the code was not delivered, so this callback resumes with its marker.
    run = prefect.add_run(waiting_state())
    prefect.answers.append(ABORT)
    prefect.delete_failures = [False]
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 200 and outcome(response) == "authorized"
    assert prefect.calls.count("create_flow_run_input") == 1
    assert len(prefect.resumes) == 2 and marker_of(run) in prefect.inputs


async def test_a_marker_held_across_the_switch_to_suspension_delivers_the_code(
    prefect: FakePrefect,
) -> None:
    # The resume aimed at the hot wait is aborted by the switch, the removal fails:
    # the suspension of the same prompt gets the code with the marker held.
    run = prefect.add_run(hot_waiting_state())
    prefect.answers.append(ABORT)
    prefect.delete_failures = [False]

    def suspend(read: FlowRun) -> None:
        if prefect.resumes and read.state is not None and read.state.name == "Paused":
            prefect.set_state(read, waiting_state("authorization-1"))
            prefect.store_schema(read)

    prefect.on_read = suspend
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 200 and outcome(response) == "authorized"
    assert prefect.calls.count("create_flow_run_input") == 1 and len(prefect.resumes) == 2
    # Recorded for the hot wait: the flow takes it as its prompt's, after the switch too.
    assert marker_is_for_wait(prefect.inputs[marker_of(run)], "suspended-authorization-1-response")


@pytest.mark.parametrize(("status", "held"), [(404, False), (503, True)])
async def test_a_removal_answered_with_a_status(
    prefect: FakePrefect, status: int, held: bool
) -> None:
    # A 404 is a retried removal that went through (made anew at the next look, no
    # read-back); any other status leaves the marker held (resumed with).
    run = prefect.add_run(waiting_state())
    prefect.answers.append(ABORT)
    prefect.delete_failures = [not held]
    prefect.delete_error = lambda: _status_error(status)
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 200 and outcome(response) == "authorized"
    after = prefect.calls[prefect.calls.index("delete_flow_run_input") + 1 :]
    assert after[:2] == [
        "read_flow_run",
        "create_flow_run_input" if not held else "read_flow_run_input",
    ]
    assert prefect.calls.count("create_flow_run_input") == (1 if held else 2)


async def test_a_resume_not_taken_whose_marker_stays_is_tried_again(
    prefect: FakePrefect,
) -> None:
    # A 503 that took nothing, then a failed removal: still this callback's to deliver.
    run = prefect.add_run(waiting_state())
    prefect.resume_failures = [False]
    prefect.delete_failures = [False]
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 200 and outcome(response) == "authorized"
    assert len(prefect.resumes) == 2 and marker_of(run) in prefect.inputs


async def test_a_removal_that_went_through_unheard_is_made_anew(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    prefect.answers.append(ABORT)
    prefect.delete_failures = [True]
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 200 and outcome(response) == "authorized"
    # Read back, found gone, then recorded again (atomically) before the resume.
    assert prefect.calls.count("create_flow_run_input") == 2
    assert len(prefect.resumes) == 2 and marker_of(run) in prefect.inputs


async def test_a_held_marker_replaced_by_another_callbacks_is_not_resumed_with(
    prefect: FakePrefect,
) -> None:
    # The removal went through unheard and a reload recorded the code for itself.
    run = prefect.add_run(waiting_state())
    prefect.answers.append(ABORT)
    prefect.delete_failures = [True]
    reloads_record = used_code_marker("suspended-authorization-1-response")

    def a_reload_records_it(_: FlowRun) -> None:
        if prefect.resumes:
            prefect.inputs.setdefault(marker_of(run), reloads_record)

    prefect.on_read = a_reload_records_it
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 409 and outcome(response) == "already-used"
    assert len(prefect.resumes) == 1 and prefect.inputs[marker_of(run)] == reloads_record


async def test_a_marker_held_when_the_run_moved_on_stays_used(prefect: FakePrefect) -> None:
    # After the refused resume the run shows its next prompt: the flow may have taken
    # this code from the form meanwhile (it accepts the receiver's record as its own),
    # so the record stays and the code is "already used", never sent to prompt 2.
    run = prefect.add_run(waiting_state())
    prefect.answers.append(ABORT)
    prefect.delete_failures = [False]

    def next_prompt(read: FlowRun) -> None:
        keyset = read.state.state_details.run_input_keyset if read.state else None
        if prefect.resumes and keyset and keyset["response"].endswith("authorization-1-response"):
            prefect.set_state(read, waiting_state("authorization-2"))
            prefect.store_schema(read)

    prefect.on_read = next_prompt
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 409 and outcome(response) == "already-used"
    assert len(prefect.resumes) == 1
    assert marker_is_for_wait(prefect.inputs[marker_of(run)], "suspended-authorization-1-response")


async def test_a_held_marker_stays_when_the_next_resume_may_have_taken(
    prefect: FakePrefect,
) -> None:
    # Held after an ABORT; the next resume is taken but its answer lost: in doubt, the
    # marker stays and a reload is refused.
    run = prefect.add_run(waiting_state())
    prefect.answers.append(ABORT)
    prefect.delete_failures = [False]

    def lose_the_next_answer(_: FlowRun) -> None:
        if len(prefect.resumes) == 1:  # after the ABORT: the next resume takes, unheard
            prefect.resume_failures = [True]

    prefect.on_read = lose_the_next_answer
    params = {"code": CODE, "state": state_of(run)}
    first = await callback(prefect, params)
    assert first.status_code == 503 and outcome(first) == "not-ready"
    assert marker_of(run) in prefect.inputs
    prefect.on_read = None
    prefect.set_state(run, waiting_state("authorization-2"))
    prefect.store_schema(run)
    reload = await callback(prefect, params)
    assert reload.status_code == 409 and outcome(reload) == "already-used"
    assert len(prefect.resumes) == 2


async def test_the_request_bound_holds_while_a_marker_is_held(prefect: FakePrefect) -> None:
    """The worst looks: every resume fails untaken while the run switches between the
    prompt's hot wait and its suspension (a new schema to check, two answer keys to look
    up), and every removal fails: the documented bound still holds."""
    run = prefect.add_run(hot_waiting_state())
    prefect.resume_failures = [False] * 100
    prefect.delete_failures = [False] * 100
    switches = iter(range(100))

    def switch() -> None:
        hot = next(switches) % 2 == 1
        prefect.set_state(run, hot_waiting_state() if hot else waiting_state())
        prefect.store_schema(run)

    prefect.on_resume_failure = switch
    response = await callback(prefect, {"code": CODE, "state": state_of(run)}, wait_seconds=20)
    assert outcome(response) == "not-ready"
    assert prefect.calls.count("create_flow_run_input") == 1
    looks = len(poll_delays(20)) + 1
    assert len(prefect.resumes) == looks  # every look resumed, with the marker held
    # Eight requests per look (the most), plus the first marker look-up.
    assert len(prefect.calls) == 1 + 8 * looks <= max_prefect_requests(20)


async def test_a_resume_that_failed_across_the_switch_to_suspension_frees_the_code(
    prefect: FakePrefect,
) -> None:
    # The receiver saw the hot wait; its resume failed (503) while the run's window
    # ended and it suspended on the same prompt: nothing was taken, a reload must work.
    hot = Paused(timeout_seconds=600, reschedule=False, pause_key="authorization-1-hot")
    hot.state_details.run_input_keyset = keyset_from_paused_state(hot)
    run = prefect.add_run(hot)
    prefect.resume_failures = [False]
    prefect.on_resume_failure = lambda: (
        prefect.set_state(run, waiting_state("authorization-1")),
        prefect.store_schema(run),
    )
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    # Tried again at the next look, on the suspension of the same prompt.
    assert response.status_code == 200 and outcome(response) == "authorized"
    assert json.loads(prefect.inputs[marker_of(run)])["wait"] == (
        "suspended-authorization-1-response"
    )
