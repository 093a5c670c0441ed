"""Sandbox instances: create checks and shape, the full flow, list, update, delete, states."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tooling.sandbox import ManualClock, SandboxConfig, create_app
from tooling.sandbox.auth import REVOKED_MESSAGE
from tooling.sandbox.errors import UNAUTHORIZED_MESSAGE
from tooling.sandbox.provisioning import MISSING_CODE_MESSAGE, PROVIDER_FAILURE_MESSAGE
from tooling.sandbox.testing import (
    API,
    authorize,
    create_instance,
    hub_headers,
    instance_body,
    platform_headers,
    sandbox_client,
)

CFG = SandboxConfig(code_ttl_seconds=60)
HEADERS = platform_headers(CFG)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def client(clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox_client(create_app(CFG, clock=clock)) as c:
        yield c


async def post(client: httpx.AsyncClient, body: Any, path: str = "/instances") -> httpx.Response:
    return await client.post(f"{API}{path}", json=body, headers=HEADERS)


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{24}", body["requestId"])
    return response.status_code, body["message"]


async def test_create_checks_auth_first(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{API}/instances", json={"element": {"key": "nope"}})
    assert error_of(response) == (401, UNAUTHORIZED_MESSAGE)


async def test_create_checks_element_before_configuration(client: httpx.AsyncClient) -> None:
    response = await post(client, {"element": {"key": "nope"}})
    assert error_of(response) == (404, "No element found with key or id 'nope'.")
    response = await post(client, {"configuration": {}}, path="/elements/999/instances")
    assert error_of(response) == (404, "No element found with key or id '999'.")
    response = await post(client, {"name": "x"})
    assert response.status_code == 400


@pytest.mark.parametrize("key", ["oauth.api.key", "oauth.api.secret", "oauth.callback.url"])
async def test_create_requires_oauth_configuration(client: httpx.AsyncClient, key: str) -> None:
    body = instance_body(CFG, None)
    del body["configuration"][key]
    assert error_of(await post(client, body)) == (
        400,
        f"Missing required configuration property '{key}'.",
    )


@pytest.mark.parametrize("element", ["infusionsofterp", "infusionsoftcrm", "infusionsoftmarketing"])
async def test_legacy_elements_require_server(client: httpx.AsyncClient, element: str) -> None:
    body = instance_body(CFG, None, element_key=element, server=None)
    assert error_of(await post(client, body)) == (
        400,
        "Missing required configuration property 'infusionsoft.server'.",
    )


@pytest.mark.parametrize(
    "server", ["http://xx1.infusionsoft.com", "xx1.keap.com", "-a.infusionsoft.com", "a.b.c"]
)
async def test_invalid_server_is_named(client: httpx.AsyncClient, server: str) -> None:
    status, message = error_of(await post(client, instance_body(CFG, None, server=server)))
    assert status == 400
    assert "infusionsoft.server" in message


async def test_rest_element_needs_no_server(client: httpx.AsyncClient) -> None:
    body = instance_body(CFG, None, element_key="infusionsoftrest", server=None)
    assert error_of(await post(client, body)) == (400, MISSING_CODE_MESSAGE)


async def test_create_requires_code(client: httpx.AsyncClient) -> None:
    response = await post(client, instance_body(CFG, None, server="https://ab12.infusionsoft.com/"))
    assert error_of(response) == (400, MISSING_CODE_MESSAGE)
    body = instance_body(CFG, None)
    body["providerData"] = {"code": ""}
    assert error_of(await post(client, body)) == (400, MISSING_CODE_MESSAGE)


async def test_bad_code_quotes_provider(client: httpx.AsyncClient) -> None:
    response = await post(client, instance_body(CFG, "IAmBad"))
    assert error_of(response) == (400, PROVIDER_FAILURE_MESSAGE)
    assert json.loads(response.json()["providerMessage"]) == {
        "error": "invalid_grant",
        "error_description": "Invalid authorization code.",
    }
    assert "IAmBad" not in response.text


async def test_expired_code(client: httpx.AsyncClient, clock: ManualClock) -> None:
    code = await authorize(client, CFG)
    clock.advance(61)
    response = await post(client, instance_body(CFG, code))
    assert error_of(response) == (400, PROVIDER_FAILURE_MESSAGE)
    assert response.json()["providerMessage"] == (
        '{"error":"invalid_grant","error_description":"Authorization code expired."}'
    )


async def test_wrong_secret_or_callback(client: httpx.AsyncClient) -> None:
    code = await authorize(client, CFG)
    body = instance_body(CFG, code)
    body["configuration"]["oauth.api.secret"] = "wrong"
    response = await post(client, body)
    assert error_of(response) == (400, PROVIDER_FAILURE_MESSAGE)
    assert response.json()["providerMessage"] == (
        '{"error":"invalid_grant","error_description":"Unable to authenticate username and '
        'password"}'
    )
    assert "wrong" not in response.text
    response = await post(client, instance_body(CFG, code, callback_url="https://other.test/cb"))
    assert response.json()["providerMessage"] == (
        '{"error":"invalid_request","error_description":"Invalid redirect_uri"}'
    )
    # Neither failure used the code up.
    assert (await post(client, instance_body(CFG, code))).status_code == 200


async def test_approve_then_create_flow_and_shape(client: httpx.AsyncClient) -> None:
    code = await authorize(client, CFG, state="run-1")
    body = instance_body(
        CFG, code, name='<a href="x">@churros-xss</a> ERP', tags=["<i>t1</i>", "t2", "t2"]
    )
    body["configuration"].update(
        {
            "infusionsoft.private.key": "enc-key",
            "my.password": "pw",
            "oauth.user.refresh_token": None,
            "filter.response.nulls": "true",
        }
    )
    response = await post(client, body)
    assert response.status_code == 200
    instance = response.json()
    assert instance["id"] == 10001
    assert instance["name"] == "@churros-xss ERP"
    assert instance["tags"] == ["t1", "t2"]
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", instance["token"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", instance["createdDate"])
    assert instance["element"] == {
        "id": 5001,
        "key": "infusionsofterp",
        "name": "Infusionsoft ERP",
        "hub": "erp",
    }
    assert instance["elementId"] == 5001
    assert instance["valid"] is True
    assert instance["disabled"] is False
    assert instance["externalAuthentication"] == "none"
    assert instance["user"] == {"id": 1}
    assert instance["configuration"] == {
        "oauth.api.key": "********",
        "oauth.api.secret": "********",
        "oauth.callback.url": "https://auth.example.com/oauth",
        "infusionsoft.server": "xx123.infusionsoft.com",
        "infusionsoft.private.key": "********",
        "my.password": "********",
        "oauth.user.refresh_token": None,
        "filter.response.nulls": "true",
    }
    assert "providerData" not in instance
    for secret in (code, "sandbox-client-secret", "enc-key"):
        assert secret not in response.text
    # The code is single use: a second instance from it is refused.
    again = await post(client, body)
    assert '"Authorization code already used."' in again.json()["providerMessage"]


async def test_create_via_element_path_and_duplicate_names(client: httpx.AsyncClient) -> None:
    first = await create_instance(client, CFG, name="same")
    code = await authorize(client, CFG, element_key="infusionsoftrest")
    body = instance_body(CFG, code, name="same", element_key="ignored-by-path", server=None)
    response = await post(client, body, path="/elements/infusionsoftrest/instances")
    assert response.status_code == 200
    second = response.json()
    assert second["id"] == first["id"] + 1
    assert second["element"]["key"] == "infusionsoftrest"
    assert second["token"] != first["token"]


async def test_list_by_tags_and_get(client: httpx.AsyncClient) -> None:
    a = await create_instance(client, CFG, tags=["run:1", "demo"])
    b = await create_instance(client, CFG, tags=["run:2", "demo"])
    listed = await client.get(f"{API}/instances", headers=HEADERS)
    assert [i["id"] for i in listed.json()] == [a["id"], b["id"]]
    demo = await client.get(f"{API}/instances", params={"tags[]": "demo"}, headers=HEADERS)
    assert [i["id"] for i in demo.json()] == [a["id"], b["id"]]
    both = await client.get(
        f"{API}/instances",
        params=[("tags[]", "demo"), ("tags[]", "run:2"), ("hydrate", "false")],
        headers=HEADERS,
    )
    assert [i["id"] for i in both.json()] == [b["id"]]
    none = await client.get(f"{API}/instances", params={"tags[]": "zzz"}, headers=HEADERS)
    assert none.json() == []
    got = await client.get(f"{API}/instances/{a['id']}", headers=HEADERS)
    assert got.json() == a
    alias = await client.get(f"{API}/elements/5001/instances/{a['id']}", headers=HEADERS)
    assert alias.json() == a
    wrong = await client.get(
        f"{API}/elements/infusionsoftrest/instances/{a['id']}", headers=HEADERS
    )
    assert error_of(wrong) == (404, f"No instance found with id {a['id']}.")
    for missing in ("99999", "abc"):
        response = await client.get(f"{API}/instances/{missing}", headers=HEADERS)
        assert error_of(response) == (404, f"No instance found with id {missing}.")


async def test_put_reauthenticates_keeping_id_and_token(client: httpx.AsyncClient) -> None:
    instance = await create_instance(client, CFG, tags=["x"])
    await client.post(f"/_sandbox/instances/{instance['id']}/revoke")
    code = await authorize(client, CFG)
    body = instance_body(CFG, code, name="renamed", tags=["y"])
    response = await client.put(f"{API}/instances/{instance['id']}", json=body, headers=HEADERS)
    assert response.status_code == 200
    updated = response.json()
    assert (updated["id"], updated["token"]) == (instance["id"], instance["token"])
    assert updated["valid"] is True
    assert (updated["name"], updated["tags"]) == ("renamed", ["y"])
    ping = await client.get(f"{API}/hubs/erp/ping", headers=hub_headers(CFG, instance["token"]))
    assert ping.status_code == 200
    # The same code cannot re-authenticate twice, and the failure changes nothing.
    response = await client.put(
        f"{API}/instances/{instance['id']}", json={**body, "name": "other"}, headers=HEADERS
    )
    assert error_of(response) == (400, PROVIDER_FAILURE_MESSAGE)
    got = await client.get(f"{API}/instances/{instance['id']}", headers=HEADERS)
    assert got.json()["name"] == "renamed"


async def test_put_without_code_updates_fields(client: httpx.AsyncClient) -> None:
    instance = await create_instance(client, CFG)
    body = instance_body(CFG, None, name="<b>new</b>", tags=["a"])
    body["configuration"]["oauth.api.secret"] = "********"  # echoed back as read: kept
    response = await client.put(f"{API}/instances/{instance['id']}", json=body, headers=HEADERS)
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["tags"]) == ("new", ["a"])
    # The stored secret was kept: a re-authentication with it still works.
    code = await authorize(client, CFG)
    response = await client.patch(
        f"{API}/instances/{instance['id']}", json={"providerData": {"code": code}}, headers=HEADERS
    )
    assert response.status_code == 200


async def test_patch_merges_configuration_and_replaces_tags(client: httpx.AsyncClient) -> None:
    instance = await create_instance(client, CFG, tags=["a", "b"])
    response = await client.patch(
        f"{API}/elements/infusionsofterp/instances/{instance['id']}",
        json={"tags": ["c"], "configuration": {"filter.response.nulls": "false"}},
        headers=HEADERS,
    )
    assert response.status_code == 200
    patched = response.json()
    assert patched["tags"] == ["c"]
    assert patched["name"] == instance["name"]
    assert patched["configuration"]["filter.response.nulls"] == "false"
    assert patched["configuration"]["oauth.api.key"] == "********"
    response = await client.patch(
        f"{API}/instances/{instance['id']}",
        json={"configuration": {"infusionsoft.server": "bad host"}},
        headers=HEADERS,
    )
    assert response.status_code == 400


async def test_delete_then_token_is_401(client: httpx.AsyncClient) -> None:
    instance = await create_instance(client, CFG)
    hub = hub_headers(CFG, instance["token"])
    assert (await client.get(f"{API}/hubs/erp/ping", headers=hub)).status_code == 200
    response = await client.delete(f"{API}/instances/{instance['id']}", headers=HEADERS)
    assert (response.status_code, response.json()) == (200, {})
    assert error_of(await client.get(f"{API}/hubs/erp/ping", headers=hub)) == (
        401,
        UNAUTHORIZED_MESSAGE,
    )
    gone = await client.get(f"{API}/instances/{instance['id']}", headers=HEADERS)
    assert gone.status_code == 404
    again = await client.delete(f"{API}/instances/{instance['id']}", headers=HEADERS)
    assert again.status_code == 404
    assert (await client.get(f"{API}/instances", headers=HEADERS)).json() == []
    admin = (await client.get("/_sandbox/instances")).json()
    assert [(i["id"], i["deleted"], i["token"]) for i in admin] == [
        (instance["id"], True, instance["token"])
    ]


async def test_disable_then_403_and_enable(client: httpx.AsyncClient) -> None:
    instance = await create_instance(client, CFG)
    hub = hub_headers(CFG, instance["token"])
    url = f"{API}/instances/{instance['id']}/enabled"
    disabled = await client.delete(url, headers=HEADERS)
    assert disabled.json()["disabled"] is True
    response = await client.get(f"{API}/hubs/crm/contacts", headers=hub)
    assert error_of(response) == (403, f"The instance {instance['id']} is disabled.")
    assert response.headers["elements-element-instance-id"] == str(instance["id"])
    enabled = await client.put(url, headers=HEADERS)
    assert enabled.json()["disabled"] is False
    assert (await client.get(f"{API}/hubs/crm/contacts", headers=hub)).status_code == 200


async def test_revoke_then_401(client: httpx.AsyncClient) -> None:
    instance = await create_instance(client, CFG)
    revoked = await client.post(f"/_sandbox/instances/{instance['id']}/revoke")
    assert revoked.json()["valid"] is False
    response = await client.get(f"{API}/hubs/crm/ping", headers=hub_headers(CFG, instance["token"]))
    assert error_of(response) == (401, REVOKED_MESSAGE)
    got = await client.get(f"{API}/instances/{instance['id']}", headers=HEADERS)
    assert got.json()["valid"] is False
    assert (await client.post("/_sandbox/instances/424242/revoke")).status_code == 404


async def test_body_must_be_json_object(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{API}/instances", content=b"{not json", headers=HEADERS)
    assert error_of(response) == (400, "The request body must be a JSON object.")
    bad_tags = instance_body(CFG, "x")
    bad_tags["tags"] = "not-a-list"
    assert (await post(client, bad_tags)).status_code == 400


async def test_concurrent_creates_with_one_code_make_one_instance(
    client: httpx.AsyncClient,
) -> None:
    code = await authorize(client, CFG)
    body = instance_body(CFG, code)
    answers = await asyncio.gather(*(post(client, body) for _ in range(8)))
    assert sorted(answer.status_code for answer in answers) == [200] + [400] * 7
    others = [await create_instance(client, CFG) for _ in range(3)]
    ids = [answer.json()["id"] for answer in answers if answer.status_code == 200]
    ids += [other["id"] for other in others]
    assert ids == [10001, 10002, 10003, 10004]
