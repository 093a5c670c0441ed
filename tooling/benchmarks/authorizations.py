"""Driving authorizations for the benchmarks: ours, the minimal floor, and bare httpx calls.

Runs are started through the Prefect API (`create_flow_run_from_deployment`, what
the UI's Run button does), the link is read from the paused run's resume form,
the person's Allow is pressed over HTTP, and the redirect is delivered to the
callback receiver, which resumes the run. The polling helpers look every 50 ms,
the same for ours and the floor.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectNotFound

from tooling.benchmarks.harness import MINIMAL, OURS_DEPLOYMENT, Bench
from tooling.devstack.consent import decide, deliver
from tooling.devstack.processes import StackError
from tooling.devstack.runs import consent_link, wait_for_form
from tooling.devstack.stack import ENCRYPTED_KEY_BLOCK
from tooling.sandbox.config import SandboxConfig

POLL_SECONDS = 0.05
SERVER = "https://dt123.infusionsoft.com"
OAUTH_URL_PATH = "/elements/infusionsofterp/oauth/url"
INSTANCE_BLOCK_TYPE = "open-connectors-instance"
MARKER_BLOCK_TYPE = "secret"


@dataclass
class Authorization:
    """One authorization run followed by a benchmark.

    Attributes:
        kind: `ours` or `minimal`.
        run_id: The flow run.
        block: The block that exists once the answer has been used.
        block_type: That block's type slug.
        started_at: Wall-clock time of the run's creation request.
        link_seconds: From the creation request to the link being readable.
        callback_at: Wall-clock time the callback was sent to the receiver.
        instance_seconds: From the callback to the block existing.
        receiver_seconds: How long the receiver took to answer the callback.
    """

    kind: str
    run_id: UUID
    block: str
    block_type: str
    started_at: float
    link: str = ""
    link_seconds: float | None = None
    callback_at: float | None = None
    instance_seconds: float | None = None
    receiver_seconds: float | None = None


def ours_parameters(instance_name: str) -> dict[str, Any]:
    """The parameters of an authorization run, as a person fills in the run form."""
    return {
        "instance_name": instance_name,
        "configuration": {"infusionsoft.server": SERVER},
        "secret_configuration": {"infusionsoft.private.key": ENCRYPTED_KEY_BLOCK},
    }


async def start_ours(client: PrefectClient, bench: Bench, name: str | None = None) -> Authorization:
    """Start one authorization from the served deployment."""
    name = name or f"bench-{uuid4().hex[:12]}"
    started = time.time()
    run = await client.create_flow_run_from_deployment(
        bench.deployment_ids[OURS_DEPLOYMENT], parameters=ours_parameters(name)
    )
    # The instance name is already a block name (lowercase, digits, dashes).
    return Authorization("ours", run.id, name, INSTANCE_BLOCK_TYPE, started)


async def start_minimal(client: PrefectClient, bench: Bench) -> Authorization:
    """Start one run of the minimal floor, served the same way."""
    marker = f"bench-minimal-{uuid4().hex[:12]}"
    app = bench.stack.sandbox.config.oauth_apps[0]
    started = time.time()
    run = await client.create_flow_run_from_deployment(
        bench.deployment_ids[MINIMAL],
        parameters={
            "oauth_url_endpoint": bench.stack.sandbox.api_base_url + OAUTH_URL_PATH,
            "api_key": app.client_id,
            "callback_url": bench.stack.callback_url,
            "marker_block": marker,
        },
    )
    return Authorization("minimal", run.id, marker, MARKER_BLOCK_TYPE, started)


async def wait_for_link(
    client: PrefectClient,
    auth: Authorization,
    *,
    timeout: float,
    poll_seconds: float = POLL_SECONDS,
) -> str:
    """Wait until the run's resume form shows the consent link; record the time to link.

    Raises:
        StackError: The run ended, or showed no link within `timeout`.
    """
    _, description = await wait_for_form(
        client, auth.run_id, timeout=timeout, poll_seconds=poll_seconds
    )
    auth.link_seconds = time.time() - auth.started_at
    auth.link = consent_link(description)
    return auth.link


async def answer(
    client: PrefectClient,
    http: httpx.AsyncClient,
    auth: Authorization,
    *,
    timeout: float,
    poll_seconds: float = POLL_SECONDS,
    wait_for_instance: bool = True,
) -> None:
    """Press Allow, deliver the redirect to the receiver, and wait for the block to exist.

    With `wait_for_instance=False` it returns once the receiver has answered (for
    callers that wait for the run's end instead, which also ends on a failure).

    Raises:
        StackError: The receiver did not resume the run, or no block appeared in time.
    """
    redirect = await decide(auth.link, "approve", client=http)
    auth.callback_at = time.time()
    response = await deliver(redirect, client=http)
    auth.receiver_seconds = time.time() - auth.callback_at
    if response.status_code != 200:
        raise StackError(f"The receiver answered {response.status_code} for the {auth.kind} run.")
    if not wait_for_instance:
        return
    await wait_for_block(
        client, auth.block, auth.block_type, timeout=timeout, poll_seconds=poll_seconds
    )
    auth.instance_seconds = time.time() - auth.callback_at


async def wait_for_block(
    client: PrefectClient,
    name: str,
    slug: str,
    *,
    timeout: float,
    poll_seconds: float = POLL_SECONDS,
) -> None:
    """Wait until a block document of that type and name exists.

    Raises:
        StackError: It did not appear within `timeout`.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await client.read_block_document_by_name(name, slug, include_secrets=False)
            return
        except ObjectNotFound:
            await asyncio.sleep(poll_seconds)
    raise StackError(f"The block {slug}/{name} did not appear within {timeout:.0f} s.")


async def state_history(client: PrefectClient, run_id: UUID) -> list[tuple[str, float]]:
    """The run's states as `(name, wall-clock timestamp)`, oldest first."""
    states = await client.read_flow_run_states(run_id)
    return sorted(
        ((state.name or state.type.value, _timestamp(state.timestamp)) for state in states),
        key=lambda item: item[1],
    )


def _timestamp(value: datetime) -> float:
    return value.timestamp()


class BareSandbox:
    """The floors made of bare httpx calls straight at a sandbox.

    Args:
        api_base_url: The sandbox's platform API base.
        config: The sandbox's secrets and OAuth app.
        callback_url: The OAuth app's callback URL (codes are bound to it).
    """

    def __init__(self, api_base_url: str, config: SandboxConfig, callback_url: str) -> None:
        self._api = api_base_url
        self._app = config.oauth_apps[0]
        self._callback = callback_url
        self._headers = {
            "Authorization": f"User {config.user_secret}, Organization {config.organization_secret}"
        }

    @classmethod
    def of(cls, bench: Bench) -> BareSandbox:
        """The floors against the stack's sandbox, with the stack's callback URL."""
        sandbox = bench.stack.sandbox
        return cls(sandbox.api_base_url, sandbox.config, bench.stack.callback_url)

    def _oauth_body(self, state: str) -> dict[str, str]:
        return {
            "apiKey": self._app.client_id,
            "apiSecret": self._app.client_secret,
            "callbackUrl": self._callback,
            "state": state,
        }

    async def time_oauth_url(self) -> float:
        """Seconds for one `POST .../oauth/url` on a new connection."""
        async with httpx.AsyncClient(timeout=30) as http:
            started = time.perf_counter()
            response = await http.post(
                self._api + OAUTH_URL_PATH, json=self._oauth_body("bare"), headers=self._headers
            )
            response.raise_for_status()
            response.json()
            return time.perf_counter() - started

    async def code(self) -> str:
        """A fresh authorization code: consent link, Allow, code from the redirect."""
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                self._api + OAUTH_URL_PATH, json=self._oauth_body("bare"), headers=self._headers
            )
            response.raise_for_status()
            redirect = await decide(response.json()["oauthUrl"], "approve", client=http)
        return parse_qs(urlsplit(redirect).query)["code"][0]

    async def create_instance(self, code: str, name: str) -> dict[str, Any]:
        """`POST /instances` with a code; the created instance (token included)."""
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                self._api + "/instances",
                json=self._instance_body(code, name),
                headers=self._headers,
            )
            response.raise_for_status()
            return dict(response.json())

    async def time_create_instance(self) -> float:
        """Seconds for one `POST /instances` on a new connection (the code is got before)."""
        code = await self.code()
        body = self._instance_body(code, f"bare-{uuid4().hex[:12]}")
        async with httpx.AsyncClient(timeout=30) as http:
            started = time.perf_counter()
            response = await http.post(self._api + "/instances", json=body, headers=self._headers)
            response.raise_for_status()
            response.json()
            return time.perf_counter() - started

    def _instance_body(self, code: str, name: str) -> dict[str, Any]:
        return {
            "element": {"key": "infusionsofterp"},
            "name": name,
            "configuration": {
                "infusionsoft.server": SERVER,
                "oauth.api.key": self._app.client_id,
                "oauth.api.secret": self._app.client_secret,
                "oauth.callback.url": self._callback,
            },
            "providerData": {"code": code},
            "tags": ["bare"],
        }
