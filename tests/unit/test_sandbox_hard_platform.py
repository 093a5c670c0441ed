"""The sandbox's harder habits (faults.py, /_sandbox/quirks), and the client against them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from open_connectors import (
    InstanceBody,
    InstanceDisabledError,
    OpenConnectorsClient,
    ProviderForbiddenError,
    RetryPolicy,
)
from open_connectors.errors import InstanceOutcomeUnknownError
from open_connectors.tags import reauthorization_tag, run_tag
from tests.unit.test_sandbox_faults import add_fault, admin_instances, journal
from tooling.sandbox import ManualClock, SandboxConfig, create_app
from tooling.sandbox.testing import (
    API,
    BASE_URL,
    DEFAULT_CALLBACK_URL,
    DEFAULT_SERVER,
    authorize,
    create_instance,
    hub_headers,
    instance_body,
    platform_headers,
    sandbox_client,
)

CFG = SandboxConfig(code_ttl_seconds=600, records_per_resource=5)
HEADERS = platform_headers(CFG)
INSTANCES = f"{API}/instances"
RUN = "11111111-1111-4111-8111-111111111111"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def app(clock: ManualClock) -> Any:
    return create_app(CFG, clock=clock)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox_client(app) as c:
        yield c


async def quirks(client: httpx.AsyncClient, **values: Any) -> dict[str, Any]:
    response = await client.put("/_sandbox/quirks", json=values)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def listed(client: httpx.AsyncClient, *tags: str) -> list[int]:
    params = [("tags[]", tag) for tag in tags]
    response = await client.get(INSTANCES, params=params, headers=HEADERS)
    return [item["id"] for item in response.json()]


# -- fault actions ---------------------------------------------------------------------------


async def test_commit_then_status_processes_and_answers_the_status(
    client: httpx.AsyncClient,
) -> None:
    await add_fault(client, "POST", INSTANCES, {"type": "commit_then_status", "status": 504})
    code = await authorize(client, CFG)
    response = await client.post(INSTANCES, json=instance_body(CFG, code), headers=HEADERS)
    assert response.status_code == 504
    assert response.json()["message"].startswith("Injected fault: 504")
    assert "token" not in response.text
    [instance] = await admin_instances(client)  # processed all the same
    assert instance["valid"] is True
    assert [(e["status"], e["fault"]) for e in await journal(client) if e["path"] == INSTANCES] == [
        (504, "commit_then_status")
    ]


async def test_commit_then_delay_holds_the_real_answer(client: httpx.AsyncClient, app: Any) -> None:
    await add_fault(client, "POST", INSTANCES, {"type": "commit_then_delay", "seconds": 0.4})
    code = await authorize(client, CFG)
    started = time.perf_counter()
    posting = asyncio.create_task(
        client.post(INSTANCES, json=instance_body(CFG, code), headers=HEADERS)
    )
    await asyncio.sleep(0.2)
    assert len(app.state.sandbox.store.live()) == 1  # processed while the answer is held
    assert not posting.done()
    response = await posting
    assert time.perf_counter() - started >= 0.4
    assert response.status_code == 200 and response.json()["token"]


async def test_provider_forbidden_answers_403_with_the_providers_words(
    client: httpx.AsyncClient,
) -> None:
    created = await create_instance(client, CFG)
    await add_fault(client, "GET", f"{API}/hubs/*", {"type": "provider_forbidden"})
    headers = hub_headers(CFG, created["token"])
    response = await client.get(f"{API}/hubs/erp/orders", headers=headers)
    assert response.status_code == 403
    body = response.json()
    assert body["message"] == "Access to the resource by the provider is forbidden."
    assert "not allowed" in body["providerMessage"]


@pytest.mark.parametrize(
    "action",
    [
        {"type": "commit_then_status"},
        {"type": "commit_then_status", "status": 100},
        {"type": "commit_then_delay"},
        {"type": "commit_then_delay", "seconds": 10_000},
        {"type": "provider_forbidden", "provider_message": "x" * 3000},
    ],
)
async def test_new_actions_are_validated(client: httpx.AsyncClient, action: dict[str, Any]) -> None:
    rule = {"method": "POST", "path": INSTANCES, "actions": [action]}
    assert (await client.post("/_sandbox/faults", json=rule)).status_code == 400


# -- quirks ----------------------------------------------------------------------------------


async def test_quirks_are_set_partly_listed_and_cleared(client: httpx.AsyncClient) -> None:
    defaults = {
        "listing_lag_seconds": 0.0,
        "ignore_tags_filter": False,
        "next_page_token_on_last_page": False,
    }
    assert (await client.get("/_sandbox/quirks")).json() == defaults
    assert await quirks(client, listing_lag_seconds=4) == {**defaults, "listing_lag_seconds": 4}
    both = await quirks(client, ignore_tags_filter=True)
    assert both == {**defaults, "listing_lag_seconds": 4, "ignore_tags_filter": True}
    for bad in ({"listing_lag_seconds": -1}, {"listing_lag_seconds": 10_000}, {"other": 1}):
        response = await client.put("/_sandbox/quirks", json=bad)
        assert response.status_code == 400
        assert response.json()["message"].startswith("Invalid quirks:")
    await client.delete("/_sandbox/faults")  # what every e2e fixture does between tests
    assert (await client.get("/_sandbox/quirks")).json() == defaults


async def test_lists_lag_behind_creation(client: httpx.AsyncClient, clock: ManualClock) -> None:
    await quirks(client, listing_lag_seconds=4)
    created = await create_instance(client, CFG, tags=["t"])
    assert await listed(client, "t") == [] and await listed(client) == []
    by_id = await client.get(f"{INSTANCES}/{created['id']}", headers=HEADERS)
    assert by_id.status_code == 200 and by_id.json()["tags"] == ["t"]
    clock.advance(3.9)
    assert await listed(client, "t") == []
    clock.advance(0.1)
    assert await listed(client, "t") == [created["id"]]


async def test_tag_changes_lag_on_reads_by_id_and_lists(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    created = await create_instance(client, CFG, tags=["old"])
    await quirks(client, listing_lag_seconds=2)
    path = f"{INSTANCES}/{created['id']}"
    response = await client.patch(path, json={"tags": ["new"]}, headers=HEADERS)
    assert response.json()["tags"] == ["new"]  # the write's own answer is current
    assert (await client.get(path, headers=HEADERS)).json()["tags"] == ["old"]
    assert await listed(client) == []
    clock.advance(2)
    assert (await client.get(path, headers=HEADERS)).json()["tags"] == ["new"]
    assert await listed(client, "new") == [created["id"]]


async def test_a_platform_ignoring_the_tags_filter(client: httpx.AsyncClient) -> None:
    first = await create_instance(client, CFG, tags=["a"])
    second = await create_instance(client, CFG, tags=["b"])
    assert await listed(client, "a") == [first["id"]]
    await quirks(client, ignore_tags_filter=True)
    assert await listed(client, "a") == [first["id"], second["id"]]


async def test_a_next_page_token_on_the_last_page_then_an_empty_page(
    client: httpx.AsyncClient, app: Any
) -> None:
    created = await create_instance(client, CFG)
    headers = hub_headers(CFG, created["token"])
    await quirks(client, next_page_token_on_last_page=True)
    pages: list[httpx.Response] = []
    cursor: str | None = None
    for _ in range(4):
        params: dict[str, Any] = {"pageSize": 3, **({"nextPage": cursor} if cursor else {})}
        pages.append(await client.get(f"{API}/hubs/erp/contacts", params=params, headers=headers))
        cursor = pages[-1].headers.get("elements-next-page-token")
    assert [len(page.json()) for page in pages[:3]] == [3, 2, 0]
    assert all("elements-next-page-token" in page.headers for page in pages)
    assert pages[2].headers["elements-returned-count"] == "0"

    async with platform_client(app, element_token=created["token"]) as oc:
        ids = [record["id"] async for record in oc.iter_records("erp", "contacts", page_size=3)]
    assert ids == [1, 2, 3, 4, 5]


# -- the client against them -----------------------------------------------------------------


def platform_client(
    app: Any,
    *,
    clock: ManualClock | None = None,
    lookup_seconds: float = 60,
    element_token: str | None = None,
) -> OpenConnectorsClient:
    async def sleep(seconds: float) -> None:
        if clock is not None:
            clock.advance(seconds)  # the sandbox's time passes as the client waits

    return OpenConnectorsClient(
        f"{BASE_URL}{API}",
        CFG.user_secret,
        CFG.organization_secret,
        element_token=element_token,
        retry_policy=RetryPolicy(max_attempts=3),
        transport=httpx.ASGITransport(app=app),
        sleep=sleep,
        ambiguous_lookup_seconds=lookup_seconds,
    )


def body_for(code: str, tags: list[str] | None = None) -> InstanceBody:
    app = CFG.oauth_apps[0]
    return InstanceBody(
        element_key="infusionsofterp",
        name="acme",
        code=SecretStr(code),
        configuration={
            "oauth.api.key": app.client_id,
            "oauth.callback.url": DEFAULT_CALLBACK_URL,
            "infusionsoft.server": DEFAULT_SERVER,
        },
        secret_configuration={"oauth.api.secret": SecretStr(app.client_secret)},
        tags=tags or [],
    )


async def calls(client: httpx.AsyncClient, method: str) -> list[tuple[int, str | None]]:
    return [
        (entry["status"], entry.get("fault"))
        for entry in await journal(client)
        if entry["method"] == method and entry["path"].startswith(INSTANCES)
    ]


async def test_504_after_commit_with_a_4s_lag_sends_the_code_exactly_once(
    client: httpx.AsyncClient, clock: ManualClock, app: Any
) -> None:
    await quirks(client, listing_lag_seconds=4)
    await add_fault(client, "POST", INSTANCES, {"type": "commit_then_status", "status": 504})
    code = await authorize(client, CFG)
    async with platform_client(app, clock=clock) as oc:
        ensured = await oc.ensure_instance(body_for(code), run_tag=run_tag(RUN))
    assert not ensured.created
    assert await calls(client, "POST") == [(504, "commit_then_status")]
    [instance] = await admin_instances(client)
    assert ensured.instance.id == instance["id"] and instance["tags"] == [run_tag(RUN)]
    assert ensured.instance.token is not None
    assert ensured.instance.token.get_secret_value() == instance["token"]


async def test_a_lag_longer_than_the_bound_fails_unknown_then_a_retry_adopts(
    client: httpx.AsyncClient, clock: ManualClock, app: Any
) -> None:
    await quirks(client, listing_lag_seconds=120)
    await add_fault(client, "POST", INSTANCES, {"type": "commit_then_status", "status": 504})
    code = await authorize(client, CFG)
    async with platform_client(app, clock=clock, lookup_seconds=60) as oc:
        with pytest.raises(InstanceOutcomeUnknownError, match="Retry of this same run"):
            await oc.ensure_instance(body_for(code), run_tag=run_tag(RUN))
        clock.advance(60)  # the person presses Retry a minute later
        ensured = await oc.ensure_instance(body_for(code), run_tag=run_tag(RUN), sent_before=True)
    assert not ensured.created
    assert await calls(client, "POST") == [(504, "commit_then_status")]
    assert len(await admin_instances(client)) == 1


async def test_the_filter_ignored_only_the_exact_tag_is_adopted(
    client: httpx.AsyncClient, clock: ManualClock, app: Any
) -> None:
    await create_instance(client, CFG, tags=[run_tag("someone-else")])
    await quirks(client, ignore_tags_filter=True)
    code = await authorize(client, CFG)
    async with platform_client(app, clock=clock) as oc:
        ensured = await oc.ensure_instance(body_for(code, ["team-a"]), run_tag=run_tag(RUN))
    assert ensured.created and run_tag(RUN) in ensured.instance.tags
    assert len(await admin_instances(client)) == 2


async def test_a_reauthorization_put_timed_out_with_lagging_tags_is_sent_once(
    client: httpx.AsyncClient, clock: ManualClock, app: Any
) -> None:
    created = await create_instance(client, CFG, tags=["team-a", run_tag(RUN)])
    await quirks(client, listing_lag_seconds=4)
    path = f"{INSTANCES}/{created['id']}"
    await add_fault(client, "PUT", path, {"type": "commit_then_status", "status": 502})
    code = await authorize(client, CFG)
    mark = reauthorization_tag("22222222-2222-4222-8222-222222222222")
    async with platform_client(app, clock=clock) as oc:
        ensured = await oc.ensure_reauthorized(created["id"], body_for(code), mark_tag=mark)
    assert not ensured.created and ensured.instance.id == created["id"]
    assert await calls(client, "PUT") == [(502, "commit_then_status")]
    [instance] = await admin_instances(client)
    assert instance["tags"] == ["team-a", run_tag(RUN), mark]


async def test_the_client_tells_a_disabled_instance_from_a_forbidden_resource(
    client: httpx.AsyncClient, app: Any
) -> None:
    created = await create_instance(client, CFG)
    await add_fault(client, "GET", f"{API}/hubs/*", {"type": "provider_forbidden"})
    async with platform_client(app, element_token=created["token"]) as oc:
        with pytest.raises(ProviderForbiddenError, match="not allowed"):
            await oc.ping("erp")
        await client.delete(f"{INSTANCES}/{created['id']}/enabled", headers=HEADERS)
        with pytest.raises(InstanceDisabledError):
            await oc.ping("erp")
