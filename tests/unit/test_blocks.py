"""The blocks: Prefect's block standards, validation, and the clients they hand out."""

from __future__ import annotations

import httpx
import pytest
import respx
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import ValidationError

from blocks import (
    ConnectorInstance,
    OAuthAppCredentials,
    OpenConnectorsCredentials,
    StateSigningKey,
)

BASE = "https://api.example.test/elements/api-v2"


@pytest.mark.parametrize(
    "block_type",
    [OpenConnectorsCredentials, OAuthAppCredentials, ConnectorInstance, StateSigningKey],
)
class TestBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block_type: type[Block]) -> type[Block]:
        return block_type


def credentials() -> OpenConnectorsCredentials:
    return OpenConnectorsCredentials(
        base_url=BASE, user_secret="user-s", organization_secret="org-s", timeout_seconds=7
    )


def test_secrets_are_masked_in_repr_and_json() -> None:
    instance = ConnectorInstance(
        instance_id=1,
        instance_name="acme",
        element_key="infusionsofterp",
        token="token-s",
        credentials=credentials(),
    )
    for text in (repr(instance), instance.model_dump_json(), str(instance.model_dump(mode="json"))):
        for secret in ("user-s", "org-s", "token-s"):
            assert secret not in text


def test_base_url_accepts_regions_and_refuses_plain_http() -> None:
    assert OpenConnectorsCredentials(
        base_url="sap-eu", user_secret="u", organization_secret="o"
    ).base_url.startswith("https://api.openconnectors.ext.hana.ondemand.com")
    with pytest.raises(ValidationError, match="https"):
        OpenConnectorsCredentials(
            base_url="http://api.example.test", user_secret="u", organization_secret="o"
        )


def test_oauth_app_checks_its_callback_url_and_key() -> None:
    app = OAuthAppCredentials(api_key=" id ", api_secret="s")
    assert app.api_key == "id" and app.callback_url == "https://auth.cloudelements.io/oauth"
    with pytest.raises(ValidationError, match="https"):
        OAuthAppCredentials(api_key="id", api_secret="s", callback_url="http://example.com/cb")
    with pytest.raises(ValidationError, match="empty"):
        OAuthAppCredentials(api_key="  ", api_secret="s")


async def test_credentials_client_sends_the_platform_header_and_timeout() -> None:
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/instances").respond(200, json=[])
        async with credentials().get_client() as client:
            await client.find_instances()
    request = route.calls.last.request
    assert request.headers["Authorization"] == "User user-s, Organization org-s"
    assert request.extensions["timeout"]["read"] == 7


async def test_instance_client_adds_the_element_token_and_uses_the_hub() -> None:
    instance = ConnectorInstance(
        instance_id=10001,
        instance_name="acme",
        element_key="infusionsofterp",
        token="token-s",
        credentials=credentials(),
    )
    assert instance.hub == "erp"
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/hubs/erp/ping").respond(200, json={"endpoint": "infusionsofterp"})
        async with instance.get_client() as client:
            await client.ping(instance.hub)
    assert route.calls.last.request.headers["Authorization"] == (
        "User user-s, Organization org-s, Element token-s"
    )


async def test_block_clients_retry_transient_failures() -> None:
    block = credentials().model_copy(update={"max_attempts": 2})
    with respx.mock(base_url=BASE) as mock:
        route = mock.get("/instances").mock(
            side_effect=[httpx.Response(503), httpx.Response(200, json=[])]
        )
        async with block.get_client() as client:
            client._sleep = _no_sleep  # type: ignore[method-assign]
            assert await client.find_instances() == []
    assert route.call_count == 2


async def _no_sleep(seconds: float) -> None:
    return None


async def test_the_ambiguous_look_up_bound_reaches_the_client() -> None:
    assert credentials().ambiguous_lookup_seconds == 60
    assert list(OpenConnectorsCredentials.model_fields)[-1] == "ambiguous_lookup_seconds"
    block = credentials().model_copy(update={"ambiguous_lookup_seconds": 12.5})
    async with block.get_client() as client:
        assert client.ambiguous_lookup_seconds == 12.5
    with pytest.raises(ValidationError):
        credentials().model_validate({**credentials().model_dump(), "ambiguous_lookup_seconds": -1})


def test_oauth_app_accepts_bare_codes_only_when_asked() -> None:
    assert OAuthAppCredentials(api_key="id", api_secret="s").accept_bare_code is False
    field = OAuthAppCredentials.model_fields["accept_bare_code"]
    assert field.description and "Risk" in field.description
    assert OAuthAppCredentials(api_key="id", api_secret="s", accept_bare_code=True).accept_bare_code
