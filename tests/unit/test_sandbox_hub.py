"""Sandbox hub calls (paging, records, ping) and the request journal and access log."""

from __future__ import annotations

import logging
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tooling.sandbox import SandboxConfig, create_app
from tooling.sandbox.hub_data import encode_cursor, make_record
from tooling.sandbox.testing import API, create_instance, hub_headers, sandbox_client

CFG = SandboxConfig(records_per_resource=1050)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox_client(create_app(CFG)) as c:
        yield c


@pytest.fixture
async def hub(client: httpx.AsyncClient) -> dict[str, str]:
    instance = await create_instance(client, CFG)
    return hub_headers(CFG, instance["token"])


async def test_ping(client: httpx.AsyncClient, hub: dict[str, str]) -> None:
    response = await client.get(f"{API}/hubs/anything/ping", headers=hub)
    assert response.status_code == 200
    body = response.json()
    assert body["endpoint"] == "infusionsofterp"
    assert body["dateTime"].endswith("Z")
    assert response.headers["elements-element-instance-id"] == "10001"


async def test_organization_is_optional_on_hub_calls(
    client: httpx.AsyncClient, hub: dict[str, str]
) -> None:
    token = hub["Authorization"].rsplit("Element ", 1)[1]
    short = {"Authorization": f"Element {token}, User {CFG.user_secret}"}
    assert (await client.get(f"{API}/hubs/crm/ping", headers=short)).status_code == 200
    wrong_org = {"Authorization": f"User {CFG.user_secret}, Organization x, Element {token}"}
    assert (await client.get(f"{API}/hubs/crm/ping", headers=wrong_org)).status_code == 401


async def test_paging_with_cursor(client: httpx.AsyncClient, hub: dict[str, str]) -> None:
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"pageSize": 200}
        if cursor:
            params["nextPage"] = cursor
        response = await client.get(f"{API}/hubs/crm/contacts", params=params, headers=hub)
        assert response.status_code == 200
        page = response.json()
        pages += 1
        assert response.headers["elements-total-count"] == "1050"
        assert response.headers["elements-returned-count"] == str(len(page))
        assert response.headers["elements-element-instance-id"] == "10001"
        seen.extend(page)
        cursor = response.headers.get("elements-next-page-token")
        if cursor is None:
            break
    assert pages == 6
    assert len(page) == 50
    ids = [record["id"] for record in seen]
    assert ids == list(range(1, 1051))
    first = seen[0]
    assert set(first) == {
        "id",
        "given_name",
        "family_name",
        "email_addresses",
        "company",
        "date_created",
    }
    assert first["email_addresses"][0]["field"] == "EMAIL1"
    assert "company_name" in first["company"]
    assert len({r["email_addresses"][0]["email"] for r in seen}) == 1050
    # Stable: reading the same page again gives the same records.
    again = await client.get(f"{API}/hubs/crm/contacts", params={"pageSize": 200}, headers=hub)
    assert again.json() == seen[:200]


async def test_page_parameter_and_generic_records(
    client: httpx.AsyncClient, hub: dict[str, str]
) -> None:
    response = await client.get(
        f"{API}/hubs/crm/accounts", params={"page": 3, "pageSize": 100}, headers=hub
    )
    records = response.json()
    assert [r["id"] for r in records] == list(range(201, 301))
    assert set(records[0]) == {"id", "name", "resource", "date_created"}
    assert records[0]["resource"] == "accounts"
    last = await client.get(
        f"{API}/hubs/crm/accounts", params={"page": 11, "pageSize": 100}, headers=hub
    )
    assert len(last.json()) == 50
    assert "elements-next-page-token" not in last.headers
    beyond = await client.get(f"{API}/hubs/crm/accounts", params={"page": 99}, headers=hub)
    assert beyond.json() == []
    assert beyond.headers["elements-returned-count"] == "0"
    assert "elements-next-page-token" not in beyond.headers


async def test_page_size_default_and_clamp(client: httpx.AsyncClient, hub: dict[str, str]) -> None:
    default = await client.get(f"{API}/hubs/crm/contacts", headers=hub)
    assert len(default.json()) == 200
    huge = await client.get(f"{API}/hubs/crm/contacts", params={"pageSize": 99999}, headers=hub)
    assert len(huge.json()) == 1050
    assert "elements-next-page-token" not in huge.headers


@pytest.mark.parametrize(
    "params",
    [
        {"nextPage": "%%%"},
        {"nextPage": "eyJ4IjoxfQ"},
        {"nextPage": encode_cursor("accounts", 10)},
        {"pageSize": "abc"},
        {"pageSize": "0"},
        {"page": "-1"},
    ],
)
async def test_bad_paging_parameters_are_400(
    client: httpx.AsyncClient, hub: dict[str, str], params: dict[str, str]
) -> None:
    response = await client.get(f"{API}/hubs/crm/contacts", params=params, headers=hub)
    assert response.status_code == 400
    assert response.json()["message"]


async def test_single_record(client: httpx.AsyncClient, hub: dict[str, str]) -> None:
    response = await client.get(f"{API}/hubs/crm/contacts/7", headers=hub)
    assert response.json() == make_record("contacts", 6)
    assert (await client.get(f"{API}/hubs/crm/contacts/1051", headers=hub)).status_code == 404


async def test_hundred_thousand_records_lazily() -> None:
    cfg = SandboxConfig(records_per_resource=100_000)
    async with sandbox_client(create_app(cfg)) as client:
        instance = await create_instance(client, cfg)
        headers = hub_headers(cfg, instance["token"])
        tracemalloc.start()
        started = time.perf_counter()
        response = await client.get(
            f"{API}/hubs/crm/contacts",
            params={"nextPage": encode_cursor("contacts", 99_000), "pageSize": 5000},
            headers=headers,
        )
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert response.headers["elements-total-count"] == "100000"
    records = response.json()
    assert [records[0]["id"], records[-1]["id"]] == [99_001, 100_000]
    assert "elements-next-page-token" not in response.headers
    assert elapsed < 2
    assert peak < 30_000_000  # a page's worth, not 100,000 records


async def test_journal_has_paths_without_query(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.access")
    secret_query = {
        "apiKey": "k",
        "apiSecret": "very-secret-value",
        "callbackUrl": "https://cb.example.com/x",
    }
    await client.get(f"{API}/elements/infusionsofterp/oauth/url", params=secret_query)
    await client.get("/oauth/landing", params={"code": "secret-code-123"})
    await client.get("/_sandbox/health")
    journal = (await client.get("/_sandbox/requests")).json()
    assert [(e["method"], e["path"], e["status"]) for e in journal] == [
        ("GET", f"{API}/elements/infusionsofterp/oauth/url", 200),
        ("GET", "/oauth/landing", 200),
    ]
    assert all(e["at"].endswith("Z") for e in journal)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"GET {API}/elements/infusionsofterp/oauth/url 200" in logged
    assert "GET /_sandbox/health 200" in logged
    assert "very-secret-value" not in logged and "secret-code-123" not in logged
    cleared = await client.delete("/_sandbox/requests")
    assert cleared.json() == {"cleared": 2}
    assert (await client.get("/_sandbox/requests")).json() == []
