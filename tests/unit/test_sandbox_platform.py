"""Sandbox platform API: auth header, error shape, elements and both `oauth/url` forms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tooling.sandbox import SandboxConfig, create_app
from tooling.sandbox.auth import parse_authorization
from tooling.sandbox.errors import UNAUTHORIZED_MESSAGE
from tooling.sandbox.testing import API, hub_headers, platform_headers, sandbox_client

CFG = SandboxConfig()
OAUTH_PARAMS = {
    "apiKey": "sandbox-client-id",
    "apiSecret": "sandbox-client-secret",
    "callbackUrl": "https://auth.example.com/oauth?x=1",
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox_client(create_app(CFG)) as c:
        yield c


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{24}", body["requestId"])
    assert body["message"] == message
    assert "providerMessage" not in body


def test_parse_authorization_any_order_and_case() -> None:
    creds = parse_authorization("element tok/+=, ORGANIZATION o,User u")
    assert creds is not None
    assert (creds.user, creds.organization, creds.element) == ("u", "o", "tok/+=")
    assert parse_authorization("User a, User b") is None
    assert parse_authorization("Bearer x") is None
    assert parse_authorization("User") is None


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        f"User {CFG.user_secret}",
        f"User wrong, Organization {CFG.organization_secret}",
        f"User {CFG.user_secret}, Organization wrong",
        f"User {CFG.user_secret}, Organization {CFG.organization_secret}, Element nope",
        "Basic abc",
    ],
)
async def test_platform_calls_need_user_and_organization(
    client: httpx.AsyncClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await client.get(f"{API}/elements/infusionsofterp", headers=headers)
    assert_error(response, 401, UNAUTHORIZED_MESSAGE)
    response = await client.get(f"{API}/instances", headers=headers)
    assert_error(response, 401, UNAUTHORIZED_MESSAGE)


async def test_auth_types_are_case_insensitive_and_unordered(client: httpx.AsyncClient) -> None:
    header = f"organization {CFG.organization_secret},USER {CFG.user_secret}"
    response = await client.get(f"{API}/instances", headers={"Authorization": header})
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize("key_or_id", ["infusionsofterp", "5001"])
async def test_get_element_by_key_or_id(client: httpx.AsyncClient, key_or_id: str) -> None:
    response = await client.get(f"{API}/elements/{key_or_id}", headers=platform_headers(CFG))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == 5001
    assert body["key"] == "infusionsofterp"
    assert body["name"] == "Infusionsoft ERP"
    assert body["hub"] == "erp"
    assert body["authentication"] == {"type": "oauth2"}


@pytest.mark.parametrize(
    ("key", "element_id", "hub"),
    [
        ("infusionsoftcrm", 191, "crm"),
        ("infusionsoftmarketing", 192, "marketing"),
        ("infusionsoftrest", 6158, "crm"),
        ("infusionsoftecommerce", 5002, "ecommerce"),
    ],
)
async def test_known_elements(
    client: httpx.AsyncClient, key: str, element_id: int, hub: str
) -> None:
    response = await client.get(f"{API}/elements/{element_id}", headers=platform_headers(CFG))
    assert (response.json()["key"], response.json()["hub"]) == (key, hub)


async def test_unknown_element_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/elements/keap", headers=platform_headers(CFG))
    assert_error(response, 404, "No element found with key or id 'keap'.")
    response = await client.get(
        f"{API}/elements/keap/oauth/url", params=OAUTH_PARAMS, headers=platform_headers(CFG)
    )
    assert_error(response, 404, "No element found with key or id 'keap'.")


async def test_unknown_route_and_method_answer_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"{API}/nothing/here"), 404, "Not found.")
    assert_error(await client.delete(f"{API}/elements/infusionsofterp"), 405, "Method not allowed.")


async def test_oauth_url_get_without_auth_header(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/elements/infusionsofterp/oauth/url", params=OAUTH_PARAMS)
    assert response.status_code == 200
    body = response.json()
    assert body["element"] == "infusionsofterp"
    assert body["oauthUrl"] == (
        "http://127.0.0.1:9999/provider/app/oauth/authorize?scope=full&response_type=code"
        "&redirect_uri=https%3A%2F%2Fauth.example.com%2Foauth%3Fx%3D1"
        "&state=infusionsofterp&client_id=sandbox-client-id"
    )


async def test_oauth_url_post_matches_get_and_is_deterministic(
    client: httpx.AsyncClient,
) -> None:
    params = {**OAUTH_PARAMS, "state": "run-42 &x"}
    url = f"{API}/elements/5001/oauth/url"
    got = await client.get(url, params=params, headers=platform_headers(CFG))
    posted = await client.post(url, json=params, headers=platform_headers(CFG))
    again = await client.post(url, json=params)
    assert got.status_code == posted.status_code == again.status_code == 200
    assert got.json() == posted.json() == again.json()
    query = parse_qs(urlsplit(posted.json()["oauthUrl"]).query)
    assert query == {
        "scope": ["full"],
        "response_type": ["code"],
        "redirect_uri": [OAUTH_PARAMS["callbackUrl"]],
        "state": ["run-42 &x"],
        "client_id": ["sandbox-client-id"],
    }


async def test_oauth_url_scope_override(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/elements/infusionsoftrest/oauth/url", json={**OAUTH_PARAMS, "scope": "other"}
    )
    query = parse_qs(urlsplit(response.json()["oauthUrl"]).query)
    assert query["scope"] == ["other"]
    assert query["state"] == ["infusionsoftrest"]


@pytest.mark.parametrize("missing", ["apiKey", "apiSecret", "callbackUrl"])
async def test_oauth_url_missing_parameter_is_400(client: httpx.AsyncClient, missing: str) -> None:
    params = {k: v for k, v in OAUTH_PARAMS.items() if k != missing}
    url = f"{API}/elements/infusionsofterp/oauth/url"
    message = f"Missing required parameter '{missing}'."
    assert_error(await client.get(url, params=params), 400, message)
    assert_error(await client.post(url, json=params), 400, message)
    assert_error(await client.post(url, json={**params, missing: ""}), 400, message)


async def test_oauth_url_bad_auth_header_is_401(client: httpx.AsyncClient) -> None:
    url = f"{API}/elements/infusionsofterp/oauth/url"
    bad = {"Authorization": "User nope, Organization nope"}
    assert_error(await client.get(url, params=OAUTH_PARAMS, headers=bad), 401, UNAUTHORIZED_MESSAGE)
    assert_error(await client.post(url, json=OAUTH_PARAMS, headers=bad), 401, UNAUTHORIZED_MESSAGE)


async def test_oauth_url_post_needs_a_json_object(client: httpx.AsyncClient) -> None:
    url = f"{API}/elements/infusionsofterp/oauth/url"
    message = "The request body must be a JSON object."
    assert_error(await client.post(url, content=b"apiKey=x"), 400, message)
    assert_error(await client.post(url, json=["x"]), 400, message)


async def test_hub_call_without_element_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{API}/hubs/crm/ping", headers=platform_headers(CFG))
    assert_error(response, 401, UNAUTHORIZED_MESSAGE)
    response = await client.get(f"{API}/hubs/crm/ping", headers=hub_headers(CFG, "bogus"))
    assert_error(response, 401, UNAUTHORIZED_MESSAGE)
