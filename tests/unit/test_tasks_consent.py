"""`get_redirect_url`: the consent link, checked, published and cached per run."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.flow_runs import aresume_flow_run

from blocks import StateSigningKey
from flows.authenticate import await_authorization, get_redirect_url
from flows.steps.blocks import AuthorizationBlocks
from flows.steps.consent import ConsentLink
from flows.steps.parameters import ConsentSubject
from flows.steps.run_identity import current_flow_run_id
from open_connectors import OpenConnectorsClient, UnusableConsentUrlError
from tests.unit.conftest import (
    Sandbox,
    answer,
    find_run_id,
    redirect_query,
    wait_for_pause,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")

SUBJECT = ConsentSubject(
    instance_name="Acme ERP",
    element_key="infusionsofterp",
    instance_block="acme-erp",
    connector_name="Infusionsoft ERP",
)
OAUTH_URL = "/elements/infusionsofterp/oauth/url"


@flow
async def consent_twice(subject: ConsentSubject, blocks: AuthorizationBlocks) -> dict[str, Any]:
    """Ask for the consent link twice in one run, as the re-run after a resume does."""
    first = await get_redirect_url(subject, blocks)
    second = await get_redirect_url(subject, blocks)
    return {"run_id": current_flow_run_id(), "first": first, "second": second}


@flow
async def consent_once(subject: ConsentSubject, blocks: AuthorizationBlocks) -> ConsentLink:
    return await get_redirect_url(subject, blocks)


async def test_the_link_carries_the_run_state_and_is_asked_once_per_run(
    sandbox: Sandbox, blocks: AuthorizationBlocks
) -> None:
    result = await consent_twice(SUBJECT, blocks)
    first: ConsentLink = result["first"]

    signer = (await StateSigningKey.aload_or_create()).signer()
    assert first.state == signer.sign(result["run_id"])
    assert redirect_query(first.url)["state"] == first.state
    assert redirect_query(first.url)["client_id"] == blocks.oauth_app.api_key
    assert (first.instance_name, first.connector_name) == ("Acme ERP", "Infusionsoft ERP")
    # The second call of the same run reads the cached link back.
    assert result["second"] == first
    assert len(sandbox.requests("POST", OAUTH_URL)) == 1
    # The link works: the provider's consent page answers with a code for this state.
    redirect = redirect_query(await sandbox.decide(first.url))
    assert redirect["state"] == first.state and redirect["code"]


async def test_each_run_gets_its_own_link(sandbox: Sandbox, blocks: AuthorizationBlocks) -> None:
    first = await consent_once(SUBJECT, blocks)
    second = await consent_once(SUBJECT, blocks)
    assert first.state != second.state
    assert len(sandbox.requests("POST", OAUTH_URL)) == 2


@flow
async def link_then_wait(subject: ConsentSubject, blocks: AuthorizationBlocks) -> str:
    """Sign a link, then wait for its answer and check it, as an authorization does."""
    consent = await get_redirect_url(subject, blocks)
    grant = await await_authorization(consent, 60)
    assert grant is not None and grant.state_checked
    return grant.code.get_secret_value()


@pytest.mark.usefixtures("fast_pause")
async def test_a_run_reads_the_state_key_once_for_its_link_and_its_answer(
    sandbox: Sandbox, blocks: AuthorizationBlocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    load = StateSigningKey.aload_or_create

    async def counted(*args: Any, **kwargs: Any) -> StateSigningKey:
        reads.append("read")
        return await load(*args, **kwargs)

    monkeypatch.setattr(StateSigningKey, "aload_or_create", counted)
    signer = (await load()).signer()

    for number in (1, 2):
        name = f"link-then-wait-{uuid4().hex}"
        run = asyncio.ensure_future(
            link_then_wait.with_options(flow_run_name=name)(SUBJECT, blocks)
        )
        run_id = await find_run_id(name)
        await wait_for_pause(run_id, "authorization-1")
        # The answer carries the state the link was signed with; the wait checks it.
        await aresume_flow_run(
            run_id, run_input=answer(code=f"code-{number}", state=signer.sign(run_id))
        )
        assert await asyncio.wait_for(run, 30) == f"code-{number}"
        # One read per run: the link's signing and the answer's check share it.
        assert len(reads) == number


async def test_the_link_is_published_and_logged_without_secrets(
    sandbox: Sandbox, blocks: AuthorizationBlocks, run_logs: list[str]
) -> None:
    state = await consent_once.with_options(flow_run_name="consent-artifact")(SUBJECT, blocks)

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["consent-link-acme-erp"])),
        )
    assert artifacts, "no consent link artifact"
    newest = max(artifacts, key=lambda item: item.created)
    assert state.url in str(newest.data)
    assert "Infusionsoft ERP" in str(newest.data)

    logged = [line for line in run_logs if "Consent link for the Infusionsoft ERP" in line]
    assert len(logged) == 1 and "'Acme ERP'" in logged[0]
    secrets = [
        sandbox.config.user_secret,
        sandbox.config.organization_secret,
        sandbox.config.oauth_apps[0].client_secret,
    ]
    for line in run_logs:
        assert not any(secret in line for secret in secrets), line


def encode_every_byte(text: str) -> str:
    """`text` percent-encoded byte by byte, letters included (`a` -> `%61`)."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


def _answering_oauth_url(url_for_state: Any) -> Any:
    """A `get_client` whose platform answers `oauth/url` with `url_for_state(state)`."""

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        state = json.loads(request.content)["state"]
        return httpx.Response(200, json={"oauthUrl": url_for_state(state)})

    def get_client(self: Any, element_token: Any = None) -> OpenConnectorsClient:
        return OpenConnectorsClient(
            self.base_url,
            self.user_secret,
            self.organization_secret,
            transport=httpx.MockTransport(handler),
        )

    return get_client


@pytest.mark.parametrize(
    ("url_for_state", "words"),
    [
        pytest.param(
            lambda state: (
                "https://accounts.infusionsoft.com/app/oauth/authorize?client_id=sandbox-client-id"
                f"&client_secret=sandbox-client-secret&state={state}"
            ),
            "contains a secret",
            id="plain secret",
        ),
        pytest.param(
            lambda state: (
                "https://accounts.infusionsoft.com/app/oauth/authorize?client_id=sandbox-client-id"
                f"&x={quote(encode_every_byte('sandbox-client-secret'), safe='')}&state={state}"
            ),
            "contains a secret",
            id="percent-encoded secret, twice",
        ),
        pytest.param(
            lambda state: (
                "http://accounts.infusionsoft.com/app/oauth/authorize?client_id=sandbox-client-id"
                f"&state={state}"
            ),
            "plain http",
            id="plain http off loopback",
        ),
        pytest.param(
            lambda state: (
                "https://accounts.infusionsoft.com/app/oauth/authorize?client_id=sandbox-client-id"
                "&state=someone-else"
            ),
            "without this run's state",
            id="another state",
        ),
    ],
)
async def test_an_unsafe_consent_url_is_refused_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
    blocks: AuthorizationBlocks,
    run_logs: list[str],
    url_for_state: Any,
    words: str,
) -> None:
    from blocks import OpenConnectorsCredentials

    monkeypatch.setattr(
        OpenConnectorsCredentials, "get_client", _answering_oauth_url(url_for_state)
    )
    with pytest.raises(UnusableConsentUrlError, match=words) as caught:
        await consent_once(SUBJECT, blocks)
    assert "sandbox-client-secret" not in str(caught.value)
    assert not any("accounts.infusionsoft.com" in line for line in run_logs)
    assert not any("sandbox-client-secret" in line for line in run_logs)
