"""Any OAuth 2.0 connector, checked against the platform's own definition (in-process sandbox)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prefect.serializers import JSONSerializer

from open_connectors import (
    ApiError,
    ConfigurationError,
    ConnectorNotFoundError,
    NotOAuth2ConnectorError,
    OpenConnectorsClient,
)
from open_connectors.connectors import (
    ConnectorSpec,
    hub_for,
    prepare_configuration,
    profile_for,
    resolve_connector,
)
from open_connectors.definitions import ConnectorDefinition, check_oauth2
from tooling.sandbox import SandboxConfig, create_app
from tooling.sandbox.testing import API, BASE_URL

CFG = SandboxConfig()


@pytest.fixture
async def client() -> AsyncIterator[OpenConnectorsClient]:
    transport = httpx.ASGITransport(app=create_app(CFG))
    async with OpenConnectorsClient(
        f"{BASE_URL}{API}", CFG.user_secret, CFG.organization_secret, transport=transport
    ) as platform:
        yield platform


async def test_a_connector_without_profile_is_read_from_the_platform(
    client: OpenConnectorsClient,
) -> None:
    spec = await resolve_connector(client, "zendesk")
    assert (spec.key, spec.name, spec.hub, spec.profile) == ("zendesk", "Zendesk", "helpdesk", None)
    subdomain = spec.definition.field("zendesk.subdomain")
    assert subdomain is not None and subdomain.required and subdomain.type == "TEXTFIELD_64"
    assert spec.definition.is_oauth2


async def test_a_missing_required_field_is_named_with_its_description(
    client: OpenConnectorsClient,
) -> None:
    spec = await resolve_connector(client, "zendesk")
    with pytest.raises(ConfigurationError) as raised:
        prepare_configuration(spec, {}, [])
    message = str(raised.value)
    assert "'zendesk.subdomain' (Your unique Zendesk subdomain" in message
    assert "configuration={'zendesk.subdomain': '...'}" in message
    # A blank value (a deployment's placeholder) is not a value.
    with pytest.raises(ConfigurationError, match=r"zendesk\.subdomain"):
        prepare_configuration(spec, {"zendesk.subdomain": "  "}, [])
    prepared = prepare_configuration(spec, {"zendesk.subdomain": "acme"}, [])
    assert prepared["zendesk.subdomain"] == "acme"


async def test_an_unknown_key_is_refused_with_the_nearest_known_key(
    client: OpenConnectorsClient,
) -> None:
    spec = await resolve_connector(client, "zendesk")
    with pytest.raises(ConfigurationError) as raised:
        prepare_configuration(spec, {"zendesk.subdomian": "acme"}, [])
    assert "no configuration key 'zendesk.subdomian'" in str(raised.value)
    assert "Did you mean 'zendesk.subdomain'?" in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        prepare_configuration(spec, {"zendesk.subdomain": "acme", "colour": "blue"}, [])
    assert "Did you mean" not in str(raised.value)
    assert "zendesk.subdomain" in str(raised.value)  # the known keys are listed
    # Keys given through Secret blocks must be known too.
    with pytest.raises(ConfigurationError, match="secret_configuration"):
        prepare_configuration(spec, {"zendesk.subdomain": "acme"}, ["zendesk.token"])


async def test_secret_fields_must_come_through_secret_blocks(
    client: OpenConnectorsClient,
) -> None:
    spec = await resolve_connector(client, "infusionsofterp")
    with pytest.raises(ConfigurationError) as raised:
        prepare_configuration(
            spec,
            {"infusionsoft.server": "dt1.infusionsoft.com", "infusionsoft.private.key": "k"},
            [],
        )
    assert "PASSWORD field" in str(raised.value) and "secret_configuration=" in str(raised.value)
    prepared = prepare_configuration(
        spec, {"infusionsoft.server": "dt1.infusionsoft.com"}, ["infusionsoft.private.key"]
    )
    assert "infusionsoft.private.key" not in prepared


def test_a_password_field_is_secret_whatever_its_key() -> None:
    definition = ConnectorDefinition.model_validate(
        {
            "key": "acme",
            "authentication": {"type": "oauth2"},
            "configuration": [
                {"key": "acme.passphrase", "type": "PASSWORD", "required": True},
                {"key": "acme.site", "type": "TEXTFIELD_32"},
            ],
        }
    )
    spec = ConnectorSpec.from_definition(definition)
    with pytest.raises(ConfigurationError, match="holds a secret"):
        prepare_configuration(spec, {"acme.passphrase": "x"}, [])
    with pytest.raises(ConfigurationError) as raised:
        prepare_configuration(spec, {"acme.site": "s"}, [])
    # A missing secret is asked for through a Secret block, not as a plain value.
    assert "secret_configuration={'acme.passphrase': '<secret block name>'}" in str(raised.value)
    assert prepare_configuration(spec, {}, ["acme.passphrase"]) == {}


async def test_defaults_are_filled_for_keys_not_given(client: OpenConnectorsClient) -> None:
    spec = await resolve_connector(client, "quickbooks")
    prepared = prepare_configuration(spec, {"quickbooks.minorversion": "65"}, [])
    assert prepared["use_sandbox"] == "false"  # a BOOLEAN default
    assert prepared["filter.response.nulls"] == "true"
    assert prepared["event.vendor.type"] == "polling"  # hidden, with a default
    assert prepared["quickbooks.minorversion"] == "65"
    # Not filled: oauth.* (from the OAuth app block), hidden fields without a default.
    assert not any(key.startswith("oauth.") for key in prepared)
    assert "event.notification.callback.url" not in prepared
    # A given value wins over the default.
    assert prepare_configuration(spec, {"use_sandbox": "true"}, [])["use_sandbox"] == "true"


async def test_a_connector_that_is_not_oauth2_is_refused_in_words(
    client: OpenConnectorsClient,
) -> None:
    with pytest.raises(NotOAuth2ConnectorError) as raised:
        await resolve_connector(client, "closeio")
    message = str(raised.value)
    assert "Close.io" in message and "basic" in message
    assert "not OAuth 2.0" in message and "OAuth 2.0 connectors only" in message
    assert raised.value.authentication_type == "basic"


async def test_an_unknown_key_is_refused_in_the_platforms_words(
    client: OpenConnectorsClient,
) -> None:
    with pytest.raises(ConnectorNotFoundError) as raised:
        await resolve_connector(client, "keap")
    assert "No element found with key or id 'keap'." in str(raised.value)
    assert raised.value.status_code == 404


async def test_a_malformed_key_is_refused_before_any_call() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no call expected")

    async with OpenConnectorsClient(
        "https://api.example.test/elements/api-v2", "u", "o", transport=httpx.MockTransport(refuse)
    ) as platform:
        with pytest.raises(ConfigurationError, match="not a connector key"):
            await resolve_connector(platform, "../instances")


async def test_the_keap_profile_stays_an_override(client: OpenConnectorsClient) -> None:
    erp = await resolve_connector(client, "infusionsofterp")
    assert erp.profile is not None and erp.name == "Infusionsoft ERP"
    with pytest.raises(ConfigurationError, match=r"dt123\.infusionsoft\.com"):
        prepare_configuration(erp, {}, [])
    prepared = prepare_configuration(erp, {"infusionsoft.server": "https://DT9.infusionsoft.com/"})
    assert prepared["infusionsoft.server"] == "dt9.infusionsoft.com"  # the profile's normalizer
    with pytest.raises(ConfigurationError, match="not an Infusionsoft account host"):
        prepare_configuration(erp, {"infusionsoft.server": "acme.example.com"}, [])


async def test_online_sales_needs_no_server(client: OpenConnectorsClient) -> None:
    spec = await resolve_connector(client, "infusionsoftecommerce")
    assert "infusionsoft.server" not in prepare_configuration(spec, {}, [])
    assert prepare_configuration(profile_for("infusionsoftecommerce"), {}) == {
        "filter.response.nulls": "true"
    }
    with pytest.raises(ConfigurationError, match=r"infusionsoft\.server"):
        prepare_configuration(profile_for("infusionsoftcrm"), {})


async def test_the_spec_survives_a_persisted_json_result(client: OpenConnectorsClient) -> None:
    spec = await resolve_connector(client, "zendesk")
    serializer: JSONSerializer[ConnectorSpec] = JSONSerializer()
    again = serializer.loads(serializer.dumps(spec))
    assert again == spec
    assert prepare_configuration(again, {"zendesk.subdomain": "a"}, []) == prepare_configuration(
        spec, {"zendesk.subdomain": "a"}, []
    )


def test_definitions_are_parsed_leniently() -> None:
    definition = ConnectorDefinition.model_validate(
        {
            "id": 7,
            "key": "odd",
            "hub": None,
            "authentication": {"type": "OAuth2"},
            "resources": [{"path": "/x"}],
            "configuration": [
                {"key": "a", "defaultValue": True, "required": None, "displayOrder": 2},
                {"key": "b", "defaultValue": 15, "hideFromConsole": True, "displayOrder": 1},
                {"name": "no key"},
                "junk",
            ],
        }
    )
    assert [item.key for item in definition.configuration] == ["a", "b"]
    assert definition.field("a").default_value == "true"  # type: ignore[union-attr]
    assert definition.field("b").default_value == "15"  # type: ignore[union-attr]
    assert definition.keys == ["b", "a"]
    check_oauth2(definition)  # the type's case does not matter
    assert ConnectorSpec.from_definition(definition).hub == "odd"  # no hub: any value works
    assert ConnectorDefinition.model_validate({"key": "k", "configuration": None}).keys == []


async def test_a_definition_without_fields_checks_secret_keys_only() -> None:
    definition = ConnectorDefinition.model_validate(
        {"key": "bare", "authentication": {"type": "oauth2"}}
    )
    spec = ConnectorSpec.from_definition(definition)
    assert prepare_configuration(spec, {"site": "x"}, []) == {"site": "x"}
    with pytest.raises(ConfigurationError, match="holds a secret"):
        prepare_configuration(spec, {"site.password": "x"}, [])


async def test_an_answer_that_is_not_a_definition_is_an_api_error() -> None:
    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")

    async with OpenConnectorsClient(
        "https://api.example.test/elements/api-v2", "u", "o", transport=httpx.MockTransport(html)
    ) as platform:
        with pytest.raises(ApiError, match="not a connector definition"):
            await platform.get_connector_definition("zendesk")


def test_a_hub_is_known_without_the_platform() -> None:
    assert hub_for("infusionsofterp") == "erp"
    assert hub_for("zendesk") == "zendesk"  # the platform ignores the hub segment
