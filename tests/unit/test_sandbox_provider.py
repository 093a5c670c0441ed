"""Sandbox Keap provider: consent page, decision redirects, token endpoint, landing page."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tooling.sandbox import ManualClock, OAuthApp, SandboxConfig, create_app
from tooling.sandbox.testing import sandbox_client

CFG = SandboxConfig(
    code_ttl_seconds=60,
    oauth_apps=[
        OAuthApp(client_id="app-1", client_secret="secret-1", name="Demo <b>&</b> App"),
        OAuthApp(client_id="app-2", client_secret="secret-2", name="Other app"),
    ],
)
REDIRECT = "https://receiver.example.com/callback?run=7"
AUTHORIZE = "/provider/app/oauth/authorize"
DECISION = "/provider/app/oauth/decision"
TOKEN = "/provider/token"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def client(clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox_client(create_app(CFG, clock=clock)) as c:
        yield c


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {
        "client_id": "app-1",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "full",
        "state": "st<ate>&1",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v != "<omit>"}


async def decide(client: httpx.AsyncClient, decision: str, **overrides: str) -> httpx.Response:
    return await client.post(DECISION, data={**authorize_params(**overrides), "decision": decision})


async def issue_code(client: httpx.AsyncClient, **overrides: str) -> str:
    response = await decide(client, "approve", **overrides)
    assert response.status_code == 303
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


def exchange_form(issued: str, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": issued,
        "client_id": "app-1",
        "client_secret": "secret-1",
        "redirect_uri": REDIRECT,
    }
    form.update(overrides)
    return form


async def test_consent_page_names_app_account_and_escapes(client: httpx.AsyncClient) -> None:
    response = await client.get(AUTHORIZE, params=authorize_params())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Demo &lt;b&gt;&amp;&lt;/b&gt; App" in page
    assert "<b>&</b>" not in page
    assert "xx123.infusionsoft.com" in page
    assert "full" in page
    assert (
        '<button type="submit" name="decision" value="approve" id="approve">Allow</button>' in page
    )
    assert '<button type="submit" name="decision" value="deny" id="deny">Deny</button>' in page
    assert 'action="/provider/app/oauth/decision"' in page
    # The state travels in a hidden field, escaped.
    assert 'value="st&lt;ate&gt;&amp;1"' in page
    assert "<script" not in page and "http://" not in page.replace(REDIRECT, "")


async def test_approve_redirects_with_code_and_state_keeping_query(
    client: httpx.AsyncClient,
) -> None:
    response = await decide(client, "approve")
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "receiver.example.com",
        "/callback",
    )
    query = parse_qs(location.query)
    assert query["run"] == ["7"]
    assert query["state"] == ["st<ate>&1"]
    assert query["scope"] == ["full|xx123.infusionsoft.com"]  # Keap names the account
    code = query["code"][0]
    assert len(code) >= 32 and re.fullmatch(r"[A-Za-z0-9_-]+", code)


async def test_deny_redirects_with_access_denied(client: httpx.AsyncClient) -> None:
    response = await decide(client, "deny", state="xyz")
    assert response.status_code == 303
    # Keap's refusal, word for word (infusionsoft-php#115).
    assert response.headers["location"] == (
        "https://receiver.example.com/callback?run=7&error=access_denied"
        "&error_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fprovider%2Fdocs%2Foauth-errors%23access_denied"
        "&error_description=User+denied+access+to+resource&state=xyz"
    )


async def test_loopback_http_redirect_is_allowed_and_state_optional(
    client: httpx.AsyncClient,
) -> None:
    for uri in ("http://127.0.0.1:4200/cb", "http://localhost/cb", "http://[::1]:8080/cb"):
        response = await decide(client, "approve", redirect_uri=uri, state="<omit>")
        assert response.status_code == 303
        assert response.headers["location"].startswith(uri + "?code=")
        assert "state=" not in response.headers["location"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"client_id": "unknown"}, "client_id"),
        ({"client_id": "<omit>"}, "client_id"),
        ({"redirect_uri": "<omit>"}, "redirect_uri"),
        ({"redirect_uri": "http://evil.example.com/cb"}, "https"),
        ({"redirect_uri": "/relative"}, "absolute"),
        ({"redirect_uri": "https://x.example.com/cb#frag"}, "fragment"),
        ({"response_type": "token"}, "response_type"),
        ({"scope": "openid"}, "scope"),
    ],
)
async def test_invalid_requests_are_not_redirected(
    client: httpx.AsyncClient, overrides: dict[str, str], fragment: str
) -> None:
    for response in (
        await client.get(AUTHORIZE, params=authorize_params(**overrides)),
        await decide(client, "approve", **overrides),
    ):
        assert response.status_code == 400
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
        assert fragment in response.text


async def test_error_page_escapes_and_unknown_decision(client: httpx.AsyncClient) -> None:
    response = await client.get(
        AUTHORIZE, params=authorize_params(redirect_uri="javascript:<script>alert(1)</script>")
    )
    assert response.status_code == 400
    assert "<script>" not in response.text
    response = await decide(client, "maybe")
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_exchange_code_then_reuse(client: httpx.AsyncClient) -> None:
    code = await issue_code(client)
    response = await client.post(TOKEN, data=exchange_form(code))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86400
    assert body["scope"] == "full|xx123.infusionsoft.com"
    assert body["access_token"] and body["refresh_token"]
    again = await client.post(TOKEN, data=exchange_form(code))
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "Authorization code already used.",
    }


async def test_code_expires(client: httpx.AsyncClient, clock: ManualClock) -> None:
    code = await issue_code(client)
    clock.advance(CFG.code_ttl_seconds)
    response = await client.post(TOKEN, data=exchange_form(code))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Authorization code expired.",
    }


async def test_code_just_before_expiry_works(client: httpx.AsyncClient, clock: ManualClock) -> None:
    code = await issue_code(client)
    clock.advance(CFG.code_ttl_seconds - 1)
    assert (await client.post(TOKEN, data=exchange_form(code))).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"code": "IAmBad"}, "Invalid authorization code."),
        (
            {"client_id": "app-2", "client_secret": "secret-2"},
            "Authorization code was issued to another client.",
        ),
    ],
)
async def test_invalid_grant_cases(
    client: httpx.AsyncClient, overrides: dict[str, str], description: str
) -> None:
    code = await issue_code(client)
    response = await client.post(TOKEN, data=exchange_form(code, **overrides))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"].startswith(description)
    # A failed exchange does not burn the code.
    assert (await client.post(TOKEN, data=exchange_form(code))).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [{"client_secret": "wrong"}, {"client_id": "nobody"}, {"client_secret": ""}],
)
async def test_a_bad_client_on_a_code_exchange_gets_keaps_answer(
    client: httpx.AsyncClient, overrides: dict[str, str]
) -> None:
    code = await issue_code(client)
    response = await client.post(TOKEN, data=exchange_form(code, **overrides))
    assert response.status_code == 401
    assert response.json() == {  # infusionsoft-php#260
        "error": "invalid_grant",
        "error_description": "Unable to authenticate username and password",
    }
    assert (await client.post(TOKEN, data=exchange_form(code))).status_code == 200


async def test_another_redirect_uri_is_keaps_invalid_request(client: httpx.AsyncClient) -> None:
    code = await issue_code(client)
    other = exchange_form(code, redirect_uri="https://receiver.example.com/other")
    response = await client.post(TOKEN, data=other)
    assert response.status_code == 400
    assert response.json() == {  # infusionsoft-php#248
        "error": "invalid_request",
        "error_description": "Invalid redirect_uri",
    }
    assert (await client.post(TOKEN, data=exchange_form(code))).status_code == 200


async def test_json_body_is_invalid_request(client: httpx.AsyncClient) -> None:
    code = await issue_code(client)
    response = await client.post(TOKEN, json=exchange_form(code))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "response_type or grant_type is required",
    }


async def test_unsupported_grant_type(client: httpx.AsyncClient) -> None:
    response = await client.post(TOKEN, data={"grant_type": "password"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_refresh_rotates(client: httpx.AsyncClient) -> None:
    code = await issue_code(client)
    first = (await client.post(TOKEN, data=exchange_form(code))).json()
    basic = httpx.BasicAuth("app-1", "secret-1")
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = await client.post(TOKEN, data=form, auth=basic)
    assert second.status_code == 200
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert body["scope"] == "full|xx123.infusionsoft.com"
    # The old refresh token stopped working; the new one works once.
    stale = await client.post(TOKEN, data=form, auth=basic)
    assert stale.status_code == 400
    assert stale.json() == {"error": "invalid_grant", "error_description": "Invalid refresh token."}
    fresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    assert (await client.post(TOKEN, data=fresh, auth=basic)).status_code == 200


async def test_refresh_needs_client_auth(client: httpx.AsyncClient) -> None:
    code = await issue_code(client)
    tokens = (await client.post(TOKEN, data=exchange_form(code))).json()
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert (await client.post(TOKEN, data=form)).status_code == 401
    wrong = httpx.BasicAuth("app-1", "nope")
    assert (await client.post(TOKEN, data=form, auth=wrong)).status_code == 401
    other = httpx.BasicAuth("app-2", "secret-2")
    response = await client.post(TOKEN, data=form, auth=other)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_landing_page_shows_address_and_code(client: httpx.AsyncClient) -> None:
    query = urlencode({"code": "abc<def>", "state": "s&t"})
    response = await client.get(f"/oauth/landing?{query}")
    assert response.status_code == 200
    page = response.text
    match = re.search(r'<code id="redirect-url">(.*?)</code>', page)
    assert match is not None
    assert html.unescape(match.group(1)) == f"http://127.0.0.1:9999/oauth/landing?{query}"
    assert '<code id="code">abc&lt;def&gt;</code>' in page
    assert "<def>" not in page
    assert "Prefect" in page


async def test_landing_page_shows_error(client: httpx.AsyncClient) -> None:
    query = urlencode({"error": "access_denied", "error_description": "<b>no</b>", "state": "s"})
    page = (await client.get(f"/oauth/landing?{query}")).text
    assert '<code id="error">access_denied</code>' in page
    assert "&lt;b&gt;no&lt;/b&gt;" in page
    assert 'id="code"' not in page


async def test_issued_codes_are_listed_for_leak_audits(client: httpx.AsyncClient) -> None:
    from tooling.sandbox.testing import authorize

    first = await authorize(client, CFG)
    second = await authorize(client, CFG)
    listed = (await client.get("/_sandbox/codes")).json()
    assert [item["code"] for item in listed] == [first, second]
