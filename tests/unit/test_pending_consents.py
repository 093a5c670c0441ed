"""Waiting and expired authorizations: decided from state types and details, announced once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect.client.schemas.objects import State, StateDetails, StateType

from flows.steps import events
from flows.steps.events import CONSENT_REQUESTED, emit_consent_event
from flows.steps.pending_consents import wait_expired_at

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _state(kind: StateType, at: datetime, pause_timeout: datetime | None = None) -> State:
    return State(
        type=kind,
        timestamp=at,
        # Any message: the decision must not depend on the server's words.
        message="whatever the server says",
        state_details=StateDetails(pause_timeout=pause_timeout),
    )


def test_a_failure_after_the_pause_deadline_is_an_expired_wait() -> None:
    deadline = T0 + timedelta(minutes=5)
    states = [
        _state(StateType.FAILED, deadline + timedelta(seconds=3)),
        _state(StateType.RUNNING, T0 - timedelta(seconds=5)),
        _state(StateType.PAUSED, T0, pause_timeout=deadline),
    ]
    assert wait_expired_at(states) == deadline


@pytest.mark.parametrize(
    "states",
    [
        # Failed before the deadline (e.g. the answer was a denial): not an expiry.
        [
            _state(StateType.PAUSED, T0, pause_timeout=T0 + timedelta(hours=1)),
            _state(StateType.FAILED, T0 + timedelta(minutes=1)),
        ],
        # Failed while running: not a wait at all.
        [_state(StateType.RUNNING, T0), _state(StateType.FAILED, T0 + timedelta(minutes=9))],
        # A pause without a deadline never expires.
        [_state(StateType.PAUSED, T0), _state(StateType.FAILED, T0 + timedelta(days=9))],
        # Still paused.
        [_state(StateType.PAUSED, T0, pause_timeout=T0 - timedelta(minutes=1))],
    ],
    ids=["failed-before-deadline", "failed-running", "no-deadline", "still-paused"],
)
def test_other_histories_are_not_expired_waits(states: list[State]) -> None:
    assert wait_expired_at(states) is None


def test_the_consent_event_carries_the_link_and_no_secret(monkeypatch: Any) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "emit_event", lambda **kwargs: sent.append(kwargs))
    emit_consent_event(
        CONSENT_REQUESTED,
        flow_run_id="0193-run",
        instance_name="ACME",
        connector="Infusionsoft ERP",
        element_key="infusionsofterp",
        block_name="acme",
        link="https://accounts.example/authorize?client_id=public&state=abc",
        expires_at=T0,
        flow_run_url="http://127.0.0.1:4200/runs/flow-run/0193-run",
    )
    (event,) = sent
    assert event["event"] == "open-connectors.consent.requested"
    assert event["resource"]["prefect.resource.id"] == "open-connectors.authorization.0193-run"
    assert {item["prefect.resource.id"] for item in event["related"]} == {
        "prefect.flow-run.0193-run",
        "open-connectors.block.acme",
    }
    assert event["payload"] == {
        "flow_run_id": "0193-run",
        "instance_name": "ACME",
        "connector": "Infusionsoft ERP",
        "element_key": "infusionsofterp",
        "block_name": "acme",
        "link": "https://accounts.example/authorize?client_id=public&state=abc",
        "expires_at": T0.isoformat(),
        "flow_run_url": "http://127.0.0.1:4200/runs/flow-run/0193-run",
    }
