"""The callback receiver's app against an in-memory Prefect: outcomes, pages, hostile queries."""

from __future__ import annotations

from collections.abc import Callable
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
from prefect.exceptions import ObjectNotFound
from prefect.input.run_input import keyset_from_paused_state
from prefect.states import Cancelled, Completed, Failed, Running, Scheduled, Suspended
from pydantic import SecretStr

from callback_receiver import ReceiverSettings, create_app
from callback_receiver.resumer import Resumer
from open_connectors import derive_state

APP_SECRET = "oauth-app-secret"
CODE = "the-authorization-code"


def waiting_state() -> State:
    state = Suspended(timeout_seconds=600, pause_key="authorization-1")
    state.state_details.run_input_keyset = keyset_from_paused_state(state)
    return state


class FakePrefect:
    """The few Prefect API calls the receiver makes, over in-memory runs."""

    def __init__(self) -> None:
        self.runs: dict[UUID, FlowRun] = {}
        self.resumes: list[tuple[UUID, dict[str, Any]]] = []
        self.answers: list[OrchestrationResult] = []
        self.on_read: Callable[[FlowRun], None] | None = None

    def add_run(self, state: State, **parameters: Any) -> FlowRun:
        run = FlowRun(
            id=uuid4(),
            flow_id=uuid4(),
            parameters={"instance_name": "Acme ERP", **parameters},
            state=state,
        )
        self.runs[run.id] = run
        return run

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        if flow_run_id not in self.runs:
            raise ObjectNotFound(http_exc=Exception("missing"))
        run = self.runs[flow_run_id]
        if self.on_read:
            self.on_read(run)
        return run

    async def resume_flow_run(self, flow_run_id: UUID, run_input: dict[str, Any]) -> Any:
        self.resumes.append((flow_run_id, run_input))
        if self.answers:
            return self.answers.pop(0)
        run = self.runs[flow_run_id]
        if run.state is None or not run.state.is_paused():
            return OrchestrationResult(
                state=None,
                status=SetStateStatus.ABORT,
                details=StateAbortDetails(reason="not paused"),
            )
        run.state = Scheduled(name="Resuming")
        run.empirical_policy.pause_keys = {"authorization-1"}
        return OrchestrationResult(
            state=run.state, status=SetStateStatus.ACCEPT, details=StateAcceptDetails()
        )

    async def api_healthcheck(self) -> None:
        return None


@pytest.fixture
def prefect() -> FakePrefect:
    return FakePrefect()


def make_client(prefect: FakePrefect, wait_seconds: float = 1.0) -> httpx.AsyncClient:
    async def load_secret(block_name: str) -> SecretStr | None:
        return SecretStr(APP_SECRET) if block_name == "infusionsoft-oauth-app" else None

    resumer = Resumer(prefect, wait_seconds=wait_seconds, load_app_secret=load_secret)  # type: ignore[arg-type]
    app = create_app(ReceiverSettings(prefect_ui_url="http://127.0.0.1:4200"), resumer=resumer)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def callback(prefect: FakePrefect, params: Any, wait_seconds: float = 1.0) -> httpx.Response:
    async with make_client(prefect, wait_seconds) as client:
        return await client.get("/oauth/callback", params=params)


def state_of(run: FlowRun) -> str:
    return derive_state(run.id, APP_SECRET)


def outcome(response: httpx.Response) -> str:
    marker = 'data-outcome="'
    start = response.text.index(marker) + len(marker)
    return response.text[start : response.text.index('"', start)]


async def test_approval_resumes_the_waiting_run(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == 200 and outcome(response) == "authorized"
    assert "Acme ERP" in response.text
    assert f"/runs/flow-run/{run.id}" in response.text
    assert prefect.resumes == [(run.id, {"code": CODE, "state": state_of(run)})]
    assert CODE not in response.text and state_of(run) not in response.text
    assert response.headers["cache-control"] == "no-store"


async def test_refusal_resumes_with_the_error(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    response = await callback(
        prefect,
        {"error": "access_denied", "error_description": "User said no", "state": state_of(run)},
    )
    assert outcome(response) == "refused"
    assert prefect.resumes[0][1]["error"] == "access_denied"


async def test_a_forged_state_resumes_nothing(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    forged = derive_state(run.id, "guessed-secret")
    response = await callback(prefect, {"code": CODE, "state": forged})
    assert response.status_code == 400 and outcome(response) == "invalid"
    assert prefect.resumes == [] and run.state is not None and run.state.is_paused()


async def test_a_run_with_an_unknown_oauth_app_resumes_nothing(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state(), oauth_app_block="another-app")
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert outcome(response) == "invalid" and prefect.resumes == []


async def test_a_replayed_callback_is_already_used(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    params = {"code": CODE, "state": state_of(run)}
    assert outcome(await callback(prefect, params)) == "authorized"
    replay = await callback(prefect, params)
    assert replay.status_code == 409 and outcome(replay) == "already-used"
    run.state = Completed()
    assert outcome(await callback(prefect, params)) == "already-used"
    assert len(prefect.resumes) == 1


@pytest.mark.parametrize(
    ("state", "expected", "status"),
    [
        (Failed(message="The flow was paused and never resumed."), "expired", 410),
        (Failed(message="StateMismatchError: ..."), "ended", 409),
        (Cancelled(), "ended", 409),
    ],
)
async def test_runs_no_longer_waiting(
    prefect: FakePrefect, state: State, expected: str, status: int
) -> None:
    run = prefect.add_run(state)
    response = await callback(prefect, {"code": CODE, "state": state_of(run)})
    assert response.status_code == status and outcome(response) == expected
    assert prefect.resumes == []


async def test_an_expired_pause_refused_at_resume_is_expired(prefect: FakePrefect) -> None:
    run = prefect.add_run(waiting_state())
    prefect.answers.append(
        OrchestrationResult(
            state=Failed(message="The flow was resuming and never resumed."),
            status=SetStateStatus.REJECT,
            details=StateRejectDetails(reason="The flow run pause has timed out."),
        )
    )
    assert outcome(await callback(prefect, {"code": CODE, "state": state_of(run)})) == "expired"


async def test_an_early_callback_waits_for_the_run_to_wait(prefect: FakePrefect) -> None:
    run = prefect.add_run(Running())
    reads = 0

    def pause_on_third_read(current: FlowRun) -> None:
        nonlocal reads
        reads += 1
        if reads == 3:
            current.state = waiting_state()

    prefect.on_read = pause_on_third_read
    # The form is not stored yet at the first attempt: Prefect refuses, the receiver retries.
    prefect.answers.append(
        OrchestrationResult(
            state=waiting_state(),
            status=SetStateStatus.REJECT,
            details=StateRejectDetails(reason="Run input schema not found."),
        )
    )
    response = await callback(prefect, {"code": CODE, "state": state_of(run)}, wait_seconds=5)
    assert outcome(response) == "authorized"
    assert len(prefect.resumes) == 2


async def test_a_run_that_never_waits_gets_a_reload_page(prefect: FakePrefect) -> None:
    run = prefect.add_run(Running())
    response = await callback(prefect, {"code": CODE, "state": state_of(run)}, wait_seconds=0.3)
    assert response.status_code == 503 and outcome(response) == "not-ready"
    assert prefect.resumes == []


async def test_an_unknown_run(prefect: FakePrefect) -> None:
    response = await callback(prefect, {"code": CODE, "state": derive_state(uuid4(), APP_SECRET)})
    assert response.status_code == 404 and outcome(response) == "unknown"


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
    assert prefect.resumes == [] and run.state is not None and run.state.is_paused()


async def test_health(prefect: FakePrefect) -> None:
    async with make_client(prefect) as client:
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
    for _, resumed_input in prefect.resumes:
        assert resumed_input["state"] == state_of(run)
