"""Bad parameters and bad block values: each refused before any network call, in words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import BlockDocumentCreate

from blocks import OAuthAppCredentials, OpenConnectorsCredentials
from flows import authenticate_connector_instance
from open_connectors import ConfigurationError, ConnectorNotFoundError, NotOAuth2ConnectorError
from tests.e2e.conftest import SERVER, SandboxAdmin, save_someone_elses_instance
from tooling.devstack.stack import LocalStack

pytestmark = pytest.mark.e2e

GOOD: dict[str, Any] = {
    "instance_name": "Hostile ERP",
    "configuration": {"infusionsoft.server": SERVER},
}

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("malformed connector key", {"element_key": "Infusion Soft!"}, "is not a connector key"),
    (
        "server of another domain",
        {"configuration": {"infusionsoft.server": "dt123.example.com"}},
        "is not an Infusionsoft account host",
    ),
    (
        "server with a path",
        {"configuration": {"infusionsoft.server": "https://dt1.infusionsoft.com/app"}},
        "is not an Infusionsoft account host",
    ),
    (
        "server over plain http",
        {"configuration": {"infusionsoft.server": "http://dt1.infusionsoft.com"}},
        "is not an Infusionsoft account host",
    ),
    ("server missing", {"configuration": {}}, "needs configuration infusionsoft.server"),
    ("empty instance name", {"instance_name": "   "}, "instance_name is empty"),
    ("oversized instance name", {"instance_name": "x" * 300}, "the limit is 200"),
    ("control characters", {"instance_name": "acme\x00erp"}, "control or invisible"),
    ("markup in the name", {"instance_name": "<script>x</script>"}, "must not contain"),
    (
        "secret as plain configuration",
        {"configuration": {"infusionsoft.server": SERVER, "infusionsoft.private.key": "k"}},
        "holds a secret",
    ),
    (
        "oauth keys as configuration",
        {"configuration": {"infusionsoft.server": SERVER, "oauth.api.secret": "s"}},
        "is set from the OAuth app block",
    ),
    ("odd tag", {"tags": ["ok", "bad\ttag"]}, "holds control characters"),
    ("too many tags", {"tags": [f"t{i}" for i in range(25)]}, "the limit is 20"),
    ("block name with spaces", {"instance_block": "Bad Name"}, "is not a block name"),
    ("no wait at all", {"authorization_timeout_minutes": 0}, "authorization_timeout_minutes"),
    (
        "missing credentials block",
        {"credentials_block": "nowhere"},
        "No Open Connectors Credentials block named 'nowhere'",
    ),
    (
        "missing OAuth app block",
        {"oauth_app_block": "nowhere"},
        "No Open Connectors OAuth App block named 'nowhere'",
    ),
    (
        "credentials block naming a block of another type",
        {"credentials_block": "infusionsoft-oauth-app"},
        "No Open Connectors Credentials block named 'infusionsoft-oauth-app'",
    ),
    (
        "missing Secret block",
        {"secret_configuration": {"infusionsoft.private.key": "nowhere"}},
        "No Secret block named 'nowhere'",
    ),
    (
        "OAuth app with a plain-http callback",
        {"oauth_app_block": "hostile-http-callback"},
        "must use https",
    ),
    ("credentials with a plain-http API", {"credentials_block": "hostile-http-api"}, "https"),
    ("instance block already taken", {"instance_block": "hostile-taken"}, "already holds instance"),
]


@pytest.fixture(scope="module")
async def bad_blocks(sandbox_blocks: LocalStack) -> AsyncIterator[None]:
    """Blocks whose stored values are bad (saved through the API, as a hand-edit could)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await _raw_block(
            client,
            OAuthAppCredentials,
            "hostile-http-callback",
            {"api_key": "id", "api_secret": "s", "callback_url": "http://example.com/callback"},
        )
        await _raw_block(
            client,
            OpenConnectorsCredentials,
            "hostile-http-api",
            {
                "base_url": "http://api.example.com/elements/api-v2",
                "user_secret": "u",
                "organization_secret": "o",
            },
        )
    await save_someone_elses_instance("hostile-taken", 1)
    yield


async def _raw_block(
    client: PrefectClient, block_type: type[Any], name: str, data: dict[str, Any]
) -> None:
    await block_type.aregister_type_and_schema(client=client)
    await client.create_block_document(
        BlockDocumentCreate(
            name=name,
            data=data,
            block_schema_id=block_type._block_schema_id,
            block_type_id=block_type._block_type_id,
        )
    )


@pytest.mark.parametrize(("case", "changes", "words"), CASES, ids=[case[0] for case in CASES])
async def test_refused_before_any_network_call(
    bad_blocks: None, sandbox: SandboxAdmin, case: str, changes: dict[str, Any], words: str
) -> None:
    before = len(await sandbox.requests())
    with pytest.raises(ConfigurationError) as raised:
        await authenticate_connector_instance(**{**GOOD, **changes})
    assert words in str(raised.value)
    assert len(await sandbox.requests()) == before, "a request reached the platform"


# Checks that need the connector's definition: the platform is asked for it (GET
# /elements/{key}) and for nothing else, so no consent link and no instance.
DEFINITION_CASES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    (
        "a key the platform does not know",
        {"element_key": "nosuchconnector", "configuration": {}},
        ConnectorNotFoundError,
        "nosuchconnector",
    ),
    (
        "a connector that is not OAuth 2.0",
        {"element_key": "closeio", "configuration": {}},
        NotOAuth2ConnectorError,
        "not OAuth 2.0",
    ),
    (
        "a required field of the definition missing",
        {"element_key": "zendesk", "configuration": {}},
        ConfigurationError,
        "zendesk.subdomain",
    ),
    (
        "a key the connector does not know, with the nearest one",
        {"element_key": "zendesk", "configuration": {"zendesk.subdomian": "acme"}},
        ConfigurationError,
        "zendesk.subdomain",
    ),
]


@pytest.mark.parametrize(
    ("case", "changes", "error", "words"),
    DEFINITION_CASES,
    ids=[case[0] for case in DEFINITION_CASES],
)
async def test_refused_against_the_definition_before_the_consent_step(
    sandbox: SandboxAdmin,
    case: str,
    changes: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    before = len(await sandbox.requests())
    with pytest.raises(error) as raised:
        await authenticate_connector_instance(
            **{**GOOD, "instance_name": f"Definition {case}", **changes}
        )
    assert words in str(raised.value)
    asked = [(entry["method"], entry["path"]) for entry in (await sandbox.requests())[before:]]
    key = changes["element_key"]
    assert asked == [("GET", f"/elements/api-v2/elements/{key}")], asked
