"""Disconnect: delete on the platform first; clean up locally only once the platform confirmed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx
from prefect.testing.utilities import prefect_test_harness
from prefect.variables import Variable

from blocks import ConnectorInstance, OpenConnectorsCredentials
from flows.disconnect import (
    DisconnectRefusedError,
    delete_on_platform,
    disconnect_connector_instance,
)
from flows.steps.health import variable_name
from open_connectors import ConfigurationError

BASE = "https://api.example.test/elements/api-v2"
INSTANCE = f"{BASE}/instances/10001"
DEFINITION = f"{BASE}/elements/zendesk"
SECRETS = ("user-s", "org-s", "element-token")


def saved() -> ConnectorInstance:
    return ConnectorInstance(
        instance_id=10001,
        instance_name="Acme Support",
        element_key="zendesk",
        token="element-token",
        credentials=OpenConnectorsCredentials(
            base_url=BASE, user_secret="user-s", organization_secret="org-s", max_attempts=1
        ),
    )


def error(status: int, message: str = "nope") -> httpx.Response:
    return httpx.Response(status, json={"requestId": "r1", "message": message})


async def run_delete(mock: respx.MockRouter) -> bool:
    instance = saved()
    async with instance.credentials.get_client() as client:
        return await delete_on_platform(client, instance)


async def test_a_live_instance_is_deleted_with_the_accounts_secrets() -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.delete(INSTANCE).mock(return_value=httpx.Response(200, json={}))
        assert await run_delete(mock) is True
    # The delete goes with User and Organization only, never the instance token.
    header = route.calls.last.request.headers["Authorization"]
    assert header == "User user-s, Organization org-s"


async def test_an_instance_already_gone_is_confirmed_by_the_platform() -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.delete(INSTANCE).mock(return_value=error(404, "No instance found with id 10001."))
        confirm = mock.get(DEFINITION).mock(
            return_value=httpx.Response(200, json={"key": "zendesk"})
        )
        assert await run_delete(mock) is False
    assert confirm.called


async def test_a_404_from_everything_is_not_taken_for_a_deleted_instance() -> None:
    with respx.mock() as mock:
        mock.delete(INSTANCE).mock(return_value=error(404, "Not found."))
        mock.get(DEFINITION).mock(return_value=error(404, "Not found."))
        with pytest.raises(DisconnectRefusedError) as raised:
            await run_delete(mock)
    assert "base_url" in str(raised.value) and "kept" in str(raised.value)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (error(401, "Invalid Organization or User secret"), "rejected the user or organization"),
        (httpx.ConnectError("refused"), "Could not reach Open Connectors"),
        (error(400, "odd"), "refused to delete instance 10001"),
    ],
)
async def test_a_platform_that_cannot_confirm_refuses_the_disconnect(
    answer: httpx.Response | Exception, words: str
) -> None:
    with respx.mock() as mock:
        route = mock.delete(INSTANCE)
        if isinstance(answer, Exception):
            route.mock(side_effect=answer)
        else:
            route.mock(return_value=answer)
        with pytest.raises(DisconnectRefusedError) as raised:
            await run_delete(mock)
    message = str(raised.value)
    assert words in message and "block and health record are kept" in message
    assert not any(secret in message for secret in SECRETS)


# -- the whole flow, on a temporary Prefect server ----------------------------------------


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def platform(mock: respx.MockRouter) -> None:
    # The temporary Prefect server is on loopback: let the flow's own API calls through.
    mock.route(host="127.0.0.1").pass_through()
    mock.route(host="localhost").pass_through()


async def save_with_record(name: str) -> None:
    await saved().asave(name, overwrite=True)
    await Variable.aset(variable_name(name), {"instance_id": 10001}, overwrite=True)


async def test_the_flow_deletes_instance_block_and_record(harness: None) -> None:
    await save_with_record("acme-support")
    with respx.mock(assert_all_called=False) as mock:
        platform(mock)
        mock.delete(INSTANCE).mock(return_value=httpx.Response(200, json={}))
        summary = await disconnect_connector_instance("acme-support")
    assert (summary.instance_id, summary.already_deleted) == (10001, False)
    assert summary.health_record_deleted is True
    assert not any(secret in summary.model_dump_json() for secret in SECRETS)
    assert await Variable.aget(variable_name("acme-support"), default=None) is None
    with pytest.raises(ValueError, match="Unable to find block document"):
        await ConnectorInstance.aload("acme-support")


async def test_the_flow_completes_for_an_instance_already_gone(harness: None) -> None:
    await saved().asave("gone-support", overwrite=True)  # never checked: no record
    with respx.mock(assert_all_called=False) as mock:
        platform(mock)
        mock.delete(INSTANCE).mock(return_value=error(404, "No instance found with id 10001."))
        mock.get(DEFINITION).mock(return_value=httpx.Response(200, json={"key": "zendesk"}))
        summary = await disconnect_connector_instance("gone-support")
    assert (summary.already_deleted, summary.health_record_deleted) == (True, False)
    with pytest.raises(ValueError, match="Unable to find block document"):
        await ConnectorInstance.aload("gone-support")


async def test_the_flow_keeps_everything_when_the_platform_is_unreachable(
    harness: None,
) -> None:
    await save_with_record("kept-support")
    with respx.mock(assert_all_called=False) as mock:
        platform(mock)
        mock.delete(INSTANCE).mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(DisconnectRefusedError, match="Could not reach"):
            await disconnect_connector_instance("kept-support")
    assert (await ConnectorInstance.aload("kept-support")).instance_id == 10001
    assert await Variable.aget(variable_name("kept-support"), default=None) is not None


async def test_the_flow_refuses_a_missing_block(harness: None) -> None:
    with pytest.raises(ConfigurationError, match="No Open Connectors Instance block"):
        await disconnect_connector_instance("no-such-block")
