"""The health check: why an instance does not answer, and which changes are announced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx

from blocks import ConnectorInstance, OpenConnectorsCredentials
from flows.steps.health import (
    REAUTHORIZABLE,
    HealthRecord,
    InstanceCheck,
    check_saved_instance,
    next_record,
    variable_name,
)

BASE = "https://api.example.test/elements/api-v2"
PING = f"{BASE}/hubs/erp/ping"
INSTANCE = f"{BASE}/instances/10001"
T0 = datetime(2026, 1, 1, 6, tzinfo=UTC)
T1 = T0 + timedelta(days=1)


def saved() -> ConnectorInstance:
    return ConnectorInstance(
        instance_id=10001,
        instance_name="Acme ERP",
        element_key="infusionsofterp",
        token="element-token",
        credentials=OpenConnectorsCredentials(
            base_url=BASE, user_secret="user-s", organization_secret="org-s", max_attempts=1
        ),
    )


def error(status: int, message: str = "nope") -> httpx.Response:
    return httpx.Response(status, json={"requestId": "r1", "message": message})


@pytest.mark.parametrize(
    ("ping", "instance", "status", "problem"),
    [
        (httpx.Response(200, json={"endpoint": "infusionsofterp"}), None, "ok", None),
        (error(403, "The instance 10001 is disabled."), None, "broken", "disabled"),
        (error(401), error(404), "broken", "deleted"),
        (error(401), httpx.Response(200, json={"id": 10001, "name": "a", "valid": False}),
         "broken", "revoked"),
        (error(401), httpx.Response(200, json={"id": 10001, "name": "a", "valid": True}),
         "broken", "rejected"),
        (error(500, "boom"), None, "unknown", None),
        (error(400, "odd"), None, "broken", "failing"),
    ],
)  # fmt: skip
async def test_each_outcome_is_told_apart(
    ping: httpx.Response, instance: httpx.Response | None, status: str, problem: str | None
) -> None:
    with respx.mock(assert_all_called=True) as mock:
        ping_route = mock.get(PING).mock(return_value=ping)
        if instance is not None:
            read = mock.get(INSTANCE).mock(return_value=instance)
        check = await check_saved_instance(saved(), "acme-erp")
    assert (check.status, check.problem) == (status, problem)
    assert check.instance_id == 10001 and check.block_name == "acme-erp"
    assert ping_route.calls.last.request.headers["Authorization"].endswith("Element element-token")
    if instance is not None:
        # Why it was refused is asked with the account's secrets, not the refused token.
        assert "Element" not in read.calls.last.request.headers["Authorization"]
    for secret in ("user-s", "org-s", "element-token"):
        assert secret not in check.model_dump_json()


async def test_an_unreachable_platform_says_nothing_about_the_instance() -> None:
    with respx.mock() as mock:
        mock.get(PING).mock(side_effect=httpx.ConnectError("refused"))
        check = await check_saved_instance(saved(), "acme-erp")
    assert check.status == "unknown" and "Could not reach" in check.detail


def check(status: str, problem: str | None = None, instance_id: int = 10001) -> InstanceCheck:
    return InstanceCheck(
        block_name="acme-erp",
        instance_id=instance_id,
        status=status,  # type: ignore[arg-type]
        problem=problem,  # type: ignore[arg-type]
    )


def record(status: str, problem: str | None = None, instance_id: int = 10001) -> HealthRecord:
    return HealthRecord(
        instance_id=instance_id,
        status=status,  # type: ignore[arg-type]
        problem=problem,  # type: ignore[arg-type]
        since=T0,
        checked_at=T0,
        reauthorization_flow_run="run-1" if status == "broken" else None,
    )


def test_first_check_of_a_healthy_instance_announces_nothing() -> None:
    kept, change = next_record(None, check("ok"), T1)
    assert change is None and kept is not None and kept.status == "ok" and kept.since == T1


def test_first_check_of_a_broken_instance_announces_it() -> None:
    kept, change = next_record(None, check("broken", "deleted"), T1)
    assert change == "broken" and kept is not None and kept.problem == "deleted"


def test_ok_to_broken_is_announced_once() -> None:
    kept, change = next_record(record("ok"), check("broken", "revoked"), T1)
    assert change == "broken" and kept is not None and kept.since == T1
    again, change = next_record(kept, check("broken", "revoked"), T1 + timedelta(days=1))
    assert change is None and again is not None and again.since == T1


def test_broken_to_ok_is_a_recovery() -> None:
    kept, change = next_record(record("broken", "revoked"), check("ok"), T1)
    assert change == "recovered" and kept is not None and kept.status == "ok" and kept.since == T1


def test_a_still_broken_instance_keeps_its_since_and_its_reauthorization_run() -> None:
    kept, change = next_record(record("broken", "revoked"), check("broken", "deleted"), T1)
    assert change is None and kept is not None
    assert (kept.since, kept.checked_at, kept.problem) == (T0, T1, "deleted")
    assert kept.reauthorization_flow_run == "run-1"


def test_an_unknown_outcome_changes_nothing() -> None:
    previous = record("broken", "revoked")
    assert next_record(previous, check("unknown"), T1) == (previous, None)
    assert next_record(None, check("unknown"), T1) == (None, None)


def test_a_record_about_another_instance_is_ignored() -> None:
    kept, change = next_record(record("broken", "deleted", 9), check("ok"), T1)
    assert change is None and kept is not None and kept.instance_id == 10001


def test_only_grant_problems_are_fixed_by_reauthorization() -> None:
    assert {"revoked", "rejected"} == REAUTHORIZABLE
    assert check("broken", "deleted").advice.startswith("Authorize a new instance")
    assert "reauthorize-connector-instance" in check("broken", "revoked").advice


def test_records_are_kept_in_a_variable_per_block() -> None:
    assert variable_name("acme-erp") == "open-connectors-health-acme-erp"
