"""The flows' typed run form: the schema the UI draws, and what the flow receives."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from prefect.blocks.system import Secret
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate
from pydantic import SecretStr

from blocks import OAuthAppCredentials, OpenConnectorsCredentials
from blocks.run_form import INFUSIONSOFT_SERVER_PATTERN, block_name
from flows.authenticate import authenticate_connector_instance
from flows.export import export_connector_resource
from flows.reauthorize import reauthorize_connector_instance
from flows.verify import verify_connector_instances
from open_connectors import ConfigurationError
from open_connectors.connectors import normalize_infusionsoft_server

FLOWS = [
    authenticate_connector_instance,
    reauthorize_connector_instance,
    verify_connector_instances,
    export_connector_resource,
]


def _schema(flow: Any) -> dict[str, Any]:
    return parameter_schema(flow).model_dump_for_openapi()


def _saved(block: Any, name: str) -> Any:
    # What Block.load_from_ref gives the engine for the picker's value.
    block._block_document_name = name
    block._block_document_id = uuid.uuid4()
    return block


def _credentials() -> OpenConnectorsCredentials:
    return OpenConnectorsCredentials(
        user_secret=SecretStr("user-secret-value"),
        organization_secret=SecretStr("org-secret-value"),
    )


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.name)
def test_no_parameter_has_a_none_switch(flow: Any) -> None:
    for name, prop in _schema(flow)["properties"].items():
        if name == "element_key":  # a switch on purpose: the catalogue, or any key
            continue
        alternatives = [item.get("type") for item in prop.get("anyOf", [])]
        assert "null" not in alternatives, f"{flow.name}.{name} renders a None switch"
        assert "anyOf" not in prop, f"{flow.name}.{name} renders as a union switch"


def test_block_parameters_render_as_pickers() -> None:
    authenticate = _schema(authenticate_connector_instance)["properties"]
    assert authenticate["credentials_block"]["block_type_slug"] == "open-connectors-credentials"
    assert authenticate["oauth_app_block"]["block_type_slug"] == "open-connectors-oauth-app"
    secret_key = authenticate["secret_configuration"]["properties"]["infusionsoft.private.key"]
    assert secret_key["block_type_slug"] == "secret"
    reauthorize = _schema(reauthorize_connector_instance)["properties"]
    assert reauthorize["instance_block"]["block_type_slug"] == "open-connectors-instance"
    export = _schema(export_connector_resource)["properties"]
    assert export["instance_block"]["block_type_slug"] == "open-connectors-instance"
    verify = _schema(verify_connector_instances)["properties"]
    assert verify["instance_blocks"]["items"]["block_type_slug"] == "open-connectors-instance"


def test_configuration_is_typed_fields_and_tags_a_list() -> None:
    properties = _schema(authenticate_connector_instance)["properties"]
    server = properties["configuration"]["properties"]["infusionsoft.server"]
    assert server["type"] == "string"
    assert server["examples"] == ["dt123.infusionsoft.com"]
    assert server["description"]
    assert properties["tags"]["type"] == "array"
    assert properties["tags"]["default"] == []


def test_the_connector_is_a_choice_by_name_or_any_key() -> None:
    connector = _schema(authenticate_connector_instance)["properties"]["element_key"]
    catalogue, any_key = connector["anyOf"]
    assert "HubSpot CRM (hubspotcrm)" in catalogue["enum"]
    assert "Infusionsoft ERP (infusionsofterp)" in catalogue["enum"]
    assert any_key["type"] == "string" and "enum" not in any_key
    for value in ("Zendesk (zendesk)", "salesforce", "infusionsofterp"):
        validate(
            {"instance_name": "ACME", "element_key": value},
            _schema(authenticate_connector_instance),
            raise_on_error=True,
            preprocess=True,
        )


@pytest.mark.parametrize(
    ("given", "received"),
    [
        ("HubSpot CRM (hubspotcrm)", "hubspotcrm"),
        ("Infusionsoft ERP (infusionsofterp)", "infusionsofterp"),
        ("salesforce", "salesforce"),  # any other key, as given
        ("Salesforce (salesforce)", "Salesforce (salesforce)"),  # not a catalogue label
    ],
)
def test_the_flow_receives_the_key_for_a_label(given: str, received: str) -> None:
    values = authenticate_connector_instance.validate_parameters(
        {"instance_name": "ACME", "element_key": given}
    )
    assert values["element_key"] == received


@pytest.mark.parametrize(
    "value",
    ["dt123.infusionsoft.com", "https://dt123.infusionsoft.com/", " DT123.infusionsoft.com "],
)
def test_server_pattern_accepts_what_the_profile_accepts(value: str) -> None:
    assert re.search(INFUSIONSOFT_SERVER_PATTERN, value)
    assert normalize_infusionsoft_server(value) == "dt123.infusionsoft.com"


@pytest.mark.parametrize("value", ["dt123.example.com", "http://dt123.infusionsoft.com", "x"])
def test_server_pattern_refuses_what_the_profile_refuses(value: str) -> None:
    assert not re.search(INFUSIONSOFT_SERVER_PATTERN, value)
    with pytest.raises(ConfigurationError):
        normalize_infusionsoft_server(value)


@pytest.mark.parametrize(
    "parameters",
    [
        # The design card, the API and the event trigger: names.
        {
            "instance_name": "ACME",
            "configuration": {"infusionsoft.server": "dt123.infusionsoft.com"},
            "tags": [],
            "credentials_block": "open-connectors",
            "oauth_app_block": "infusionsoft-oauth-app",
            "secret_configuration": {"infusionsoft.private.key": "infusionsoft-key"},
        },
        # The UI's pickers: block document references.
        {
            "instance_name": "ACME",
            "configuration": {"infusionsoft.server": "dt123.infusionsoft.com", "other.key": "x"},
            "credentials_block": {"$ref": {"block_document_id": str(uuid.uuid4())}},
            "oauth_app_block": {"$ref": {"block_document_id": str(uuid.uuid4())}},
            "secret_configuration": {
                "infusionsoft.private.key": {"$ref": {"block_document_id": str(uuid.uuid4())}}
            },
        },
    ],
    ids=["names", "references"],
)
def test_the_servers_schema_check_accepts_names_and_references(parameters: dict) -> None:
    schema = _schema(authenticate_connector_instance)
    validate(parameters, schema, raise_on_error=True, preprocess=True)


def test_the_servers_schema_check_refuses_a_bad_server() -> None:
    schema = _schema(authenticate_connector_instance)
    parameters = {"instance_name": "ACME", "configuration": {"infusionsoft.server": "x.com"}}
    with pytest.raises(Exception, match="does not match"):
        validate(parameters, schema, raise_on_error=True, preprocess=True)


def test_the_flow_receives_names_for_loaded_blocks_and_for_names() -> None:
    picked = authenticate_connector_instance.validate_parameters(
        {
            "instance_name": "ACME",
            "configuration": {"infusionsoft.server": "dt123.infusionsoft.com", "empty": ""},
            "credentials_block": _saved(_credentials(), "picked-account"),
            "oauth_app_block": "typed-app",
            "secret_configuration": {
                "infusionsoft.private.key": _saved(Secret(value="k"), "picked-key")
            },
            "tags": None,
        }
    )
    assert picked["credentials_block"] == "picked-account"
    assert picked["oauth_app_block"] == "typed-app"
    assert picked["secret_configuration"] == {"infusionsoft.private.key": "picked-key"}
    assert picked["configuration"] == {"infusionsoft.server": "dt123.infusionsoft.com"}
    assert picked["tags"] == []


def test_an_empty_configuration_means_not_given() -> None:
    # A re-authorization then reuses the configuration the instance was created with.
    checked = reauthorize_connector_instance.validate_parameters(
        {"instance_block": "acme", "configuration": {"infusionsoft.server": ""}}
    )
    assert checked["configuration"] is None


def test_a_block_of_another_type_is_refused_without_its_secrets() -> None:
    with pytest.raises(ValueError, match="OAuth App") as raised:
        block_name(_saved(_credentials(), "account"), OAuthAppCredentials, "oauth_app_block")
    assert "secret-value" not in str(raised.value)


def test_an_anonymous_block_is_refused() -> None:
    with pytest.raises(ValueError, match="saved block"):
        block_name(_credentials(), OpenConnectorsCredentials, "credentials_block")
