"""Sandbox connectors beyond Keap: definitions, generic required checks, consent, hub calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tooling.sandbox import SandboxConfig, create_app
from tooling.sandbox.provisioning import MISSING_CODE_MESSAGE
from tooling.sandbox.testing import (
    API,
    create_instance,
    hub_headers,
    instance_body,
    platform_headers,
    sandbox_client,
)

CFG = SandboxConfig()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox_client(create_app(CFG)) as c:
        yield c


async def definition(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await client.get(f"{API}/elements/{key}", headers=platform_headers(CFG))
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"{API}/instances", json=body, headers=platform_headers(CFG))


@pytest.mark.parametrize(
    ("key", "hub", "authentication", "required"),
    [
        ("zendesk", "helpdesk", "oauth2", {"zendesk.subdomain"}),
        ("hubspotcrm", "crm", "oauth2", set()),
        ("quickbooks", "finance", "oauth2", set()),
        ("infusionsofterp", "erp", "oauth2", {"infusionsoft.server"}),
        ("infusionsoftecommerce", "ecommerce", "oauth2", set()),
        ("closeio", "crm", "basic", {"username", "password"}),
    ],
)
async def test_definitions_carry_hub_authentication_and_configuration(
    client: httpx.AsyncClient, key: str, hub: str, authentication: str, required: set[str]
) -> None:
    body = await definition(client, key)
    assert (body["key"], body["hub"], body["authentication"]) == (
        key,
        hub,
        {"type": authentication},
    )
    fields = body["configuration"]
    assert [item["displayOrder"] for item in fields] == list(range(1, len(fields) + 1))
    for item in fields:
        assert {"key", "name", "type", "required", "defaultValue", "hideFromConsole"} <= set(item)
    oauth = {"oauth.api.key", "oauth.api.secret", "oauth.callback.url"}
    own = {item["key"] for item in fields if item["required"]} - oauth
    assert own == required
    assert oauth <= {item["key"] for item in fields} or authentication != "oauth2"


async def test_a_zendesk_instance_needs_its_subdomain(client: httpx.AsyncClient) -> None:
    response = await post(client, instance_body(CFG, None, element_key="zendesk", server=None))
    assert response.status_code == 400
    assert response.json()["message"] == (
        "Missing required configuration property 'zendesk.subdomain'."
    )
    bad = instance_body(
        CFG, None, element_key="zendesk", server=None, configuration={"zendesk.subdomain": "a b"}
    )
    response = await post(client, bad)
    assert response.status_code == 400 and "zendesk.subdomain" in response.json()["message"]


async def test_a_zendesk_instance_is_created_and_answers_hub_calls(
    client: httpx.AsyncClient,
) -> None:
    instance = await create_instance(
        client,
        CFG,
        element_key="zendesk",
        server=None,
        configuration={"zendesk.subdomain": "acme"},
    )
    assert instance["element"]["key"] == "zendesk"
    assert instance["configuration"]["zendesk.subdomain"] == "acme"
    headers = hub_headers(CFG, instance["token"])
    ping = await client.get(f"{API}/hubs/helpdesk/ping", headers=headers)
    assert ping.status_code == 200 and ping.json()["endpoint"] == "zendesk"
    tickets = await client.get(
        f"{API}/hubs/helpdesk/tickets", params={"pageSize": 3}, headers=headers
    )
    assert tickets.status_code == 200 and len(tickets.json()) == 3


async def test_hubspot_needs_only_the_oauth_keys(client: httpx.AsyncClient) -> None:
    instance = await create_instance(client, CFG, element_key="hubspotcrm", server=None)
    assert instance["element"]["hub"] == "crm"


async def test_online_sales_needs_no_server(client: httpx.AsyncClient) -> None:
    body = instance_body(CFG, None, element_key="infusionsoftecommerce", server=None)
    assert (await post(client, body)).json()["message"] == MISSING_CODE_MESSAGE


async def test_a_basic_connector_has_no_consent_and_takes_its_credentials(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"{API}/elements/closeio/oauth/url",
        json={"apiKey": "a", "apiSecret": "b", "callbackUrl": "https://c.example/"},
    )
    assert response.status_code == 400 and "does not use OAuth 2.0" in response.json()["message"]
    body = {"element": {"key": "closeio"}, "name": "close", "configuration": {"username": "k"}}
    response = await post(client, body)
    assert response.json()["message"] == "Missing required configuration property 'password'."
    body["configuration"]["password"] = "p"
    response = await post(client, body)
    assert response.status_code == 200
    assert response.json()["configuration"]["password"] == "********"
