"""Helpers to drive an in-process sandbox from tests and benchmarks (no network)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from tooling.sandbox.config import SandboxConfig

BASE_URL = "http://127.0.0.1:9999"
API = "/elements/api-v2"
DEFAULT_CALLBACK_URL = "https://auth.example.com/oauth"
DEFAULT_SERVER = "xx123.infusionsoft.com"


def sandbox_client(app: FastAPI) -> httpx.AsyncClient:
    """An httpx client talking to `app` in process, as if it were on a loopback port."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


def platform_headers(config: SandboxConfig) -> dict[str, str]:
    """`Authorization: User …, Organization …` for platform calls."""
    return {
        "Authorization": f"User {config.user_secret}, Organization {config.organization_secret}"
    }


def hub_headers(config: SandboxConfig, token: str) -> dict[str, str]:
    """`Authorization: User …, Organization …, Element …` for hub calls."""
    value = platform_headers(config)["Authorization"]
    return {"Authorization": f"{value}, Element {token}"}


def instance_body(
    config: SandboxConfig,
    code: str | None,
    *,
    element_key: str = "infusionsofterp",
    name: str = "sandbox instance",
    tags: list[str] | None = None,
    callback_url: str = DEFAULT_CALLBACK_URL,
    server: str | None = DEFAULT_SERVER,
    configuration: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A `POST /instances` body for the first OAuth app of `config`.

    `server` is the Keap family's `infusionsoft.server` (None: left out); `configuration`
    adds any other keys, e.g. `{"zendesk.subdomain": "acme"}`.
    """
    app = config.oauth_apps[0]
    values = {
        "oauth.api.key": app.client_id,
        "oauth.api.secret": app.client_secret,
        "oauth.callback.url": callback_url,
    }
    if server is not None:
        values["infusionsoft.server"] = server
    values.update(configuration or {})
    body: dict[str, Any] = {
        "element": {"key": element_key},
        "name": name,
        "configuration": values,
        "tags": tags or [],
    }
    if code is not None:
        body["providerData"] = {"code": code}
    return body


async def authorize(
    client: httpx.AsyncClient,
    config: SandboxConfig,
    *,
    element_key: str = "infusionsofterp",
    callback_url: str = DEFAULT_CALLBACK_URL,
    state: str = "sandbox-state",
) -> str:
    """Walk the consent flow (oauth/url, consent page, Allow) and return the code."""
    app = config.oauth_apps[0]
    answer = await client.post(
        f"{API}/elements/{element_key}/oauth/url",
        json={
            "apiKey": app.client_id,
            "apiSecret": app.client_secret,
            "callbackUrl": callback_url,
            "state": state,
        },
    )
    answer.raise_for_status()
    consent_url = answer.json()["oauthUrl"]
    page = await client.get(consent_url)
    page.raise_for_status()
    fields = {key: values[0] for key, values in parse_qs(urlsplit(consent_url).query).items()}
    redirect = await client.post(
        "/provider/app/oauth/decision", data={**fields, "decision": "approve"}
    )
    if redirect.status_code != 303:
        raise AssertionError(f"the consent page answered {redirect.status_code}")
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    return query["code"][0]


async def create_instance(
    client: httpx.AsyncClient, config: SandboxConfig, **body_options: Any
) -> dict[str, Any]:
    """Authorize and create an instance; return the platform's instance JSON."""
    callback_url = body_options.get("callback_url", DEFAULT_CALLBACK_URL)
    element_key = body_options.get("element_key", "infusionsofterp")
    code = await authorize(client, config, element_key=element_key, callback_url=callback_url)
    answer = await client.post(
        f"{API}/instances",
        json=instance_body(config, code, **body_options),
        headers=platform_headers(config),
    )
    answer.raise_for_status()
    instance: dict[str, Any] = answer.json()
    return instance
