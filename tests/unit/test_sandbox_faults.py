"""Sandbox fault injection: rules, actions, latency, code expiry, journal; in process and real."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.test_sandbox_process import read_ready, stop
from tooling.sandbox import ManualClock, SandboxConfig, create_app
from tooling.sandbox.provisioning import PROVIDER_FAILURE_MESSAGE
from tooling.sandbox.testing import API, authorize, instance_body, platform_headers, sandbox_client

CFG = SandboxConfig(code_ttl_seconds=60)
HEADERS = platform_headers(CFG)
INSTANCES = f"{API}/instances"
# What an httpx client gets when the server closes the connection without an answer:
# a clean close (no bytes) or, with unread data in the server's socket, a reset.
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def client(clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox_client(create_app(CFG, clock=clock)) as c:
        yield c


async def add_fault(
    client: httpx.AsyncClient, method: str, path: str, *actions: dict[str, Any]
) -> str:
    response = await client.post(
        "/_sandbox/faults", json={"method": method, "path": path, "actions": list(actions)}
    )
    assert response.status_code == 201, response.text
    rule_id: str = response.json()["id"]
    return rule_id


def status(code: int, **extra: Any) -> dict[str, Any]:
    return {"type": "status", "status": code, **extra}


async def create(client: httpx.AsyncClient, code: str) -> httpx.Response:
    return await client.post(INSTANCES, json=instance_body(CFG, code), headers=HEADERS)


async def admin_instances(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    instances: list[dict[str, Any]] = (await client.get("/_sandbox/instances")).json()
    return instances


async def journal(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (await client.get("/_sandbox/requests")).json()
    return entries


# -- rules and status answers (in process) -------------------------------------------------


async def test_503_503_then_normal_changes_nothing_until_served(client: httpx.AsyncClient) -> None:
    await add_fault(client, "POST", INSTANCES, status(503), status(503))
    code = await authorize(client, CFG)
    for _ in range(2):
        response = await create(client, code)
        assert response.status_code == 503
        body = response.json()
        assert re.fullmatch(r"[0-9a-f]{24}", body["requestId"])
        assert body["message"].startswith("Injected fault: 503")
        assert await admin_instances(client) == []
    # The code was never consumed by the faulted attempts.
    response = await create(client, code)
    assert response.status_code == 200
    assert [i["id"] for i in await admin_instances(client)] == [response.json()["id"]]


async def test_429_passes_retry_after_and_custom_body(client: httpx.AsyncClient) -> None:
    body = {"message": "Rate limit exceeded", "providerMessage": "Quota Exceeded"}
    await add_fault(client, "GET", INSTANCES, status(429, headers={"Retry-After": "2"}, body=body))
    response = await client.get(INSTANCES, headers=HEADERS)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json() == body
    assert (await client.get(INSTANCES, headers=HEADERS)).status_code == 200


async def test_prefix_matching_and_query_strings_ignored(client: httpx.AsyncClient) -> None:
    await add_fault(client, "GET", f"{API}/hubs/*", status(502), status(502), status(502))
    hub = await client.get(f"{API}/hubs/crm/contacts", params={"pageSize": 5})
    assert hub.status_code == 502  # answered before the (missing) auth is even looked at
    assert (await client.get(f"{API}/hubs/crm/ping")).status_code == 502
    assert (await client.get(INSTANCES, headers=HEADERS)).status_code == 200  # not a hub path
    await add_fault(client, "GET", INSTANCES, status(500))
    assert (await client.get(INSTANCES, params={"tags[]": "x"}, headers=HEADERS)).status_code == 500
    assert (await client.get(f"{API}/hubs/")).status_code == 502  # the prefix itself matches


async def test_method_matching(client: httpx.AsyncClient) -> None:
    await add_fault(client, "get", INSTANCES, status(503))
    assert (await client.post(INSTANCES, json={})).status_code == 401  # POST: untouched
    assert (await client.get(INSTANCES)).status_code == 503
    await add_fault(client, "*", INSTANCES, status(504), status(504))
    assert (await client.post(INSTANCES, json={})).status_code == 504
    assert (await client.delete(f"{INSTANCES}")).status_code == 504
    assert (await client.get(INSTANCES)).status_code == 401  # used up


async def test_oldest_rule_wins_and_used_up_rules_stop_applying(
    client: httpx.AsyncClient,
) -> None:
    first = await add_fault(client, "GET", INSTANCES, status(500))
    second = await add_fault(client, "*", f"{API}/*", status(502), status(503))
    codes = [(await client.get(INSTANCES)).status_code for _ in range(4)]
    assert codes == [500, 502, 503, 401]
    rules = (await client.get("/_sandbox/faults")).json()
    assert rules == [
        {"id": first, "method": "GET", "path": INSTANCES, "actions": [], "hits": 1},
        {"id": second, "method": "*", "path": f"{API}/*", "actions": [], "hits": 2},
    ]


async def test_pass_status_pass_sequence_and_listing(client: httpx.AsyncClient) -> None:
    rule = await add_fault(
        client, "GET", INSTANCES, {"type": "pass"}, status(503), {"type": "pass"}
    )
    assert (await client.get(INSTANCES, headers=HEADERS)).status_code == 200
    [listed] = (await client.get("/_sandbox/faults")).json()
    assert listed == {
        "id": rule,
        "method": "GET",
        "path": INSTANCES,
        "actions": [{"type": "status", "status": 503, "headers": {}}, {"type": "pass"}],
        "hits": 1,
    }
    codes = [(await client.get(INSTANCES, headers=HEADERS)).status_code for _ in range(3)]
    assert codes == [503, 200, 200]


async def test_delete_one_rule_and_all(client: httpx.AsyncClient) -> None:
    rule = await add_fault(client, "GET", INSTANCES, status(503))
    await add_fault(client, "GET", INSTANCES, status(502))
    assert (await client.delete(f"/_sandbox/faults/{rule}")).json() == {"id": rule}
    assert (await client.delete(f"/_sandbox/faults/{rule}")).status_code == 404
    assert (await client.get(INSTANCES)).status_code == 502
    assert (await client.put("/_sandbox/latency", json={"seconds": 0.5})).status_code == 200
    await add_fault(client, "GET", INSTANCES, status(503))
    assert (await client.delete("/_sandbox/faults")).json() == {"cleared": 2}
    assert (await client.get("/_sandbox/faults")).json() == []
    assert (await client.get("/_sandbox/latency")).json() == {"seconds": 0}
    assert (await client.get(INSTANCES)).status_code == 401


async def test_admin_paths_are_never_faulted(client: httpx.AsyncClient) -> None:
    await add_fault(client, "*", "/*", {"type": "reset"}, {"type": "reset"})
    assert (await client.get("/_sandbox/health")).json() == {"status": "ok"}
    assert (await client.get("/_sandbox/requests")).status_code == 200
    [rule] = (await client.get("/_sandbox/faults")).json()
    assert rule["hits"] == 0


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"method": "GET", "path": "/_sandbox/health", "actions": [status(503)]}, "admin"),
        ({"method": "GET", "path": "/_sandbox*", "actions": [status(503)]}, "admin"),
        ({"method": "GET", "path": f"{INSTANCES}?x=1", "actions": [status(503)]}, "query"),
        ({"method": "GET", "path": "/a*b", "actions": [status(503)]}, "end"),
        ({"method": "GET", "path": "instances", "actions": [status(503)]}, "start"),
        ({"method": "GE T", "path": INSTANCES, "actions": [status(503)]}, "method"),
        ({"method": "GET", "path": INSTANCES, "actions": []}, "actions"),
        ({"method": "GET", "path": INSTANCES, "actions": [{"type": "boom"}]}, "actions"),
        ({"method": "GET", "path": INSTANCES, "actions": [status(99)]}, "status"),
        ({"method": "GET", "path": INSTANCES, "actions": [{"type": "delay"}]}, "seconds"),
        (
            {"method": "GET", "path": INSTANCES, "actions": [{"type": "delay", "seconds": -1}]},
            "seconds",
        ),
        (
            {"method": "GET", "path": INSTANCES, "actions": [status(503, headers={"a b": "1"})]},
            "header",
        ),
        (
            {
                "method": "GET",
                "path": INSTANCES,
                "actions": [status(503, headers={"Content-Length": "1"})],
            },
            "header",
        ),
        ({"method": "GET", "path": INSTANCES, "actions": [status(503)], "x": 1}, "x"),
    ],
)
async def test_invalid_rules_are_refused(
    client: httpx.AsyncClient, rule: dict[str, Any], problem: str
) -> None:
    response = await client.post("/_sandbox/faults", json=rule)
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("Invalid fault rule:")
    assert problem in message.lower()
    assert (await client.get("/_sandbox/faults")).json() == []


async def test_concurrent_requests_each_take_one_action(client: httpx.AsyncClient) -> None:
    await add_fault(client, "GET", INSTANCES, *[status(503)] * 5, {"type": "delay", "seconds": 0})
    responses = await asyncio.gather(*[client.get(INSTANCES, headers=HEADERS) for _ in range(20)])
    assert sorted(r.status_code for r in responses) == [200] * 15 + [503] * 5
    [rule] = (await client.get("/_sandbox/faults")).json()
    assert (rule["hits"], rule["actions"]) == (6, [])


# -- drops, delay and latency (in process) -----------------------------------------------


async def test_reset_in_process_raises_a_transport_error(client: httpx.AsyncClient) -> None:
    await add_fault(client, "POST", INSTANCES, {"type": "reset"})
    code = await authorize(client, CFG)
    with pytest.raises(httpx.RemoteProtocolError):
        await create(client, code)
    assert await admin_instances(client) == []
    assert (await create(client, code)).status_code == 200  # the code was not consumed


async def test_commit_then_drop_in_process_commits(client: httpx.AsyncClient) -> None:
    await add_fault(client, "POST", INSTANCES, {"type": "commit_then_drop"})
    code = await authorize(client, CFG)
    with pytest.raises(httpx.RemoteProtocolError):
        await create(client, code)
    [instance] = await admin_instances(client)
    assert instance["valid"] is True
    retry = await create(client, code)  # the classic trap: the code is already used
    assert retry.status_code == 400
    assert retry.json()["message"] == PROVIDER_FAILURE_MESSAGE
    assert "already used" in retry.json()["providerMessage"]


async def test_delay_and_latency(client: httpx.AsyncClient) -> None:
    await add_fault(client, "GET", INSTANCES, {"type": "delay", "seconds": 0.3})
    started = time.perf_counter()
    assert (await client.get(INSTANCES, headers=HEADERS)).status_code == 200
    assert time.perf_counter() - started >= 0.3

    assert (await client.put("/_sandbox/latency", json={"seconds": 0.2})).json() == {"seconds": 0.2}
    started = time.perf_counter()
    await client.get("/_sandbox/health")  # admin: no latency
    assert time.perf_counter() - started < 0.2
    for path in (INSTANCES, f"{API}/elements/infusionsofterp"):
        started = time.perf_counter()
        await client.get(path, headers=HEADERS)
        assert time.perf_counter() - started >= 0.2
    assert (await client.put("/_sandbox/latency", json={"seconds": 0})).status_code == 200
    started = time.perf_counter()
    await client.get(INSTANCES, headers=HEADERS)
    assert time.perf_counter() - started < 0.2
    for bad in ({"seconds": -1}, {"seconds": 1000}, {}, {"seconds": 1, "x": 2}):
        assert (await client.put("/_sandbox/latency", json=bad)).status_code == 400


# -- the journal ----------------------------------------------------------------------------


async def test_journal_records_faults(client: httpx.AsyncClient) -> None:
    await add_fault(
        client,
        "GET",
        INSTANCES,
        status(503),
        {"type": "reset"},
        {"type": "commit_then_drop"},
        {"type": "delay", "seconds": 0},
        {"type": "pass"},
    )
    await client.get(INSTANCES, headers=HEADERS)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(INSTANCES, headers=HEADERS)
    for _ in range(3):
        await client.get(INSTANCES, headers=HEADERS)
    entries = await journal(client)
    assert [(e["status"], e.get("fault")) for e in entries] == [
        (503, "status"),
        (0, "reset"),
        (0, "commit_then_drop"),
        (200, "delay"),
        (200, "pass"),
        (200, None),
    ]
    assert "fault" not in entries[-1]


async def test_access_log_names_the_fault(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="sandbox.access")
    await add_fault(client, "GET", INSTANCES, status(503))
    await client.get(INSTANCES, params={"secret": "do-not-log"})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert re.search(rf"GET {INSTANCES} 503 [0-9.]+ms fault=status", logged)
    assert "do-not-log" not in logged


# -- authorization codes and settings ---------------------------------------------------


async def test_expire_codes_now(client: httpx.AsyncClient) -> None:
    used = await authorize(client, CFG)
    assert (await create(client, used)).status_code == 200
    waiting = [await authorize(client, CFG) for _ in range(2)]
    assert (await client.post("/_sandbox/codes/expire")).json() == {"expired": 2}
    assert (await client.post("/_sandbox/codes/expire")).json() == {"expired": 0}
    response = await create(client, waiting[0])
    assert response.status_code == 400
    assert "expired" in response.json()["providerMessage"]
    fresh = await authorize(client, CFG)  # codes issued afterwards are unaffected
    assert (await create(client, fresh)).status_code == 200


async def test_shorter_code_ttl(client: httpx.AsyncClient, clock: ManualClock) -> None:
    assert (await client.get("/_sandbox/settings")).json() == {"code_ttl_seconds": 60}
    before = await authorize(client, CFG)
    answer = await client.put("/_sandbox/settings", json={"code_ttl_seconds": 5})
    assert answer.json() == {"code_ttl_seconds": 5}
    after = await authorize(client, CFG)
    clock.advance(5)
    expired = await create(client, after)
    assert expired.status_code == 400
    assert "expired" in expired.json()["providerMessage"]
    assert (await create(client, before)).status_code == 200  # issued under the old TTL
    assert CFG.code_ttl_seconds == 60  # the shared configuration is left alone
    for bad in ({"code_ttl_seconds": 0}, {"code_ttl_seconds": "x"}, {"other": 1}):
        response = await client.put("/_sandbox/settings", json=bad)
        assert response.status_code == 400
        assert response.json()["message"].startswith("Invalid settings:")
    assert (await client.put("/_sandbox/settings", json={})).json() == {"code_ttl_seconds": 5}


# -- against the real process (uvicorn) -----------------------------------------------------


@pytest.fixture(scope="module")
def real_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A `python -m tooling.sandbox` process: its URL and its log file."""
    log_path = tmp_path_factory.mktemp("sandbox-faults") / "sandbox.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tooling.sandbox",
                "--port",
                "0",
                "--max-lifetime",
                "120",
                "--parent-pid",
                str(os.getpid()),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        yield read_ready(process)["url"], log_path
    finally:
        stop(process)


def assert_quiet_log(log_path: Path, fault: str) -> None:
    """The drop is in the access log, but not as an error, and no secret or code is."""
    log = log_path.read_text(encoding="utf-8")
    assert re.search(rf"POST {INSTANCES} 0 [0-9.]+ms fault={fault}", log)
    assert " ERROR " not in log and "Traceback" not in log
    assert "code=" not in log and CFG.oauth_apps[0].client_secret not in log


@pytest.fixture
async def real_client(real_sandbox: tuple[str, Path]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=real_sandbox[0], timeout=5) as c:
        yield c
        await c.delete("/_sandbox/faults")
        await c.delete("/_sandbox/requests")


async def test_real_reset_sends_no_answer(
    real_client: httpx.AsyncClient, real_sandbox: tuple[str, Path]
) -> None:
    await add_fault(real_client, "POST", INSTANCES, {"type": "reset"})
    code = await authorize(real_client, CFG)
    with pytest.raises(DROPPED):
        await create(real_client, code)
    assert await admin_instances(real_client) == []
    # The same client carries on over a new connection; the code is still good.
    assert (await create(real_client, code)).status_code == 200
    entries = [e for e in await journal(real_client) if e["path"] == INSTANCES]
    assert [(e["status"], e.get("fault")) for e in entries] == [(0, "reset"), (200, None)]
    assert_quiet_log(real_sandbox[1], "reset")


async def test_real_commit_then_drop_creates_the_instance(
    real_client: httpx.AsyncClient, real_sandbox: tuple[str, Path]
) -> None:
    await add_fault(real_client, "POST", INSTANCES, {"type": "commit_then_drop"})
    code = await authorize(real_client, CFG)
    before = {i["id"] for i in await admin_instances(real_client)}
    with pytest.raises(DROPPED):
        await create(real_client, code)
    created = [i for i in await admin_instances(real_client) if i["id"] not in before]
    assert len(created) == 1 and created[0]["name"] == "sandbox instance"
    assert (await create(real_client, code)).status_code == 400  # code already used
    assert_quiet_log(real_sandbox[1], "commit_then_drop")


async def test_real_status_sequence_on_one_connection(real_client: httpx.AsyncClient) -> None:
    await add_fault(
        real_client, "POST", INSTANCES, status(503, headers={"Retry-After": "1"}), status(429)
    )
    code = await authorize(real_client, CFG)
    first = await create(real_client, code)  # a body the sandbox never reads
    assert (first.status_code, first.headers["retry-after"]) == (503, "1")
    assert (await create(real_client, code)).status_code == 429
    assert (await create(real_client, code)).status_code == 200


async def test_real_delay_gives_a_read_timeout(real_client: httpx.AsyncClient) -> None:
    await add_fault(real_client, "GET", INSTANCES, {"type": "delay", "seconds": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        await real_client.get(INSTANCES, headers=HEADERS, timeout=0.1)
    assert (await real_client.get(INSTANCES, headers=HEADERS)).status_code == 200


async def test_real_commit_then_delay_times_the_client_out_after_the_write(
    real_client: httpx.AsyncClient,
) -> None:
    await add_fault(real_client, "POST", INSTANCES, {"type": "commit_then_delay", "seconds": 1})
    code = await authorize(real_client, CFG)
    before = {i["id"] for i in await admin_instances(real_client)}
    with pytest.raises(httpx.ReadTimeout):
        await real_client.post(
            INSTANCES, json=instance_body(CFG, code), headers=HEADERS, timeout=0.3
        )
    created = [i for i in await admin_instances(real_client) if i["id"] not in before]
    assert len(created) == 1  # the write is done although the client saw only a timeout


async def test_real_commit_then_status_answers_the_gateway_status(
    real_client: httpx.AsyncClient,
) -> None:
    await add_fault(real_client, "POST", INSTANCES, {"type": "commit_then_status", "status": 504})
    code = await authorize(real_client, CFG)
    before = {i["id"] for i in await admin_instances(real_client)}
    assert (await create(real_client, code)).status_code == 504
    assert len([i for i in await admin_instances(real_client) if i["id"] not in before]) == 1
