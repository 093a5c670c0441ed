"""The platform client against scripted HTTP answers (httpx.MockTransport)."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from open_connectors import (
    REGIONS,
    ApiError,
    AuthorizationCodeRejectedError,
    ConfigurationError,
    ConnectorNotFoundError,
    InstanceAuthenticationError,
    InstanceBody,
    InstanceDisabledError,
    InstanceNotFoundError,
    OAuthAppRejectedError,
    OpenConnectorsClient,
    PlatformAuthenticationError,
    PlatformUnavailableError,
    ProviderError,
    ProviderForbiddenError,
    RetryPolicy,
)

BASE = "https://api.example.test/elements/api-v2"
USER, ORG, TOKEN = "user-secret-value", "org-secret-value", "element-token-value"
APP_SECRET, CODE = "app-secret-value", "authorization-code-value"
SECRETS = (USER, ORG, TOKEN, APP_SECRET, CODE)

Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """A transport answering from a list of handlers or responses, and recording requests."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers: Iterator[httpx.Response | Exception | Handler] = iter(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(
    script: Script, *, element_token: str | None = None, attempts: int = 4
) -> tuple[OpenConnectorsClient, Sleeps]:
    sleeps = Sleeps()
    client = OpenConnectorsClient(
        BASE,
        USER,
        ORG,
        element_token=element_token,
        timeout=12.5,
        retry_policy=RetryPolicy(max_attempts=attempts),
        transport=httpx.MockTransport(script),
        sleep=sleeps,
    )
    return client, sleeps


def error(status: int, message: str, provider: str | None = None, **headers: str) -> httpx.Response:
    body = {"requestId": "5f0c1a2b3c4d5e6f7a8b9c0d", "message": message}
    if provider is not None:
        body["providerMessage"] = provider
    return httpx.Response(status, json=body, headers=headers)


def instance_json(instance_id: int = 10001, **extra: object) -> dict[str, object]:
    return {
        "id": instance_id,
        "name": "acme",
        "token": TOKEN,
        "element": {"id": 5001, "key": "infusionsofterp"},
        "tags": ["t"],
        **extra,
    }


def request_for_instance() -> InstanceBody:
    return InstanceBody(
        element_key="infusionsofterp",
        name="acme",
        code=SecretStr(CODE),
        configuration={"infusionsoft.server": "dt123.infusionsoft.com"},
        secret_configuration={"oauth.api.secret": SecretStr(APP_SECRET)},
        tags=["team-a"],
    )


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


async def test_platform_calls_send_user_and_organization_and_the_timeout() -> None:
    script = Script(httpx.Response(200, json=[]))
    client, _ = make_client(script)
    async with client:
        assert await client.find_instances() == []
    request = script.requests[0]
    assert request.headers["Authorization"] == f"User {USER}, Organization {ORG}"
    assert request.extensions["timeout"] == httpx.Timeout(12.5).as_dict()


async def test_hub_calls_add_the_element_token() -> None:
    script = Script(httpx.Response(200, json={"dateTime": "now"}))
    client, _ = make_client(script, element_token=TOKEN)
    async with client:
        await client.ping("erp")
    assert script.requests[0].url.path == "/elements/api-v2/hubs/erp/ping"
    assert script.requests[0].headers["Authorization"] == (
        f"User {USER}, Organization {ORG}, Element {TOKEN}"
    )


async def test_oauth_url_posts_the_secret_in_the_body_never_in_the_url() -> None:
    script = Script(httpx.Response(200, json={"oauthUrl": "https://p/a?state=s", "element": "k"}))
    client, _ = make_client(script)
    async with client:
        answer = await client.get_oauth_url(
            "infusionsofterp",
            api_key="client-id",
            api_secret=SecretStr(APP_SECRET),
            callback_url="https://cb.example/cb",
            state="s",
        )
    assert answer.oauth_url == "https://p/a?state=s"
    request = script.requests[0]
    assert request.method == "POST"
    assert APP_SECRET not in str(request.url)
    assert json.loads(request.content) == {
        "apiKey": "client-id",
        "apiSecret": APP_SECRET,
        "callbackUrl": "https://cb.example/cb",
        "state": "s",
    }


async def test_oauth_url_falls_back_to_get_only_when_post_is_not_allowed() -> None:
    script = Script(
        httpx.Response(405, json={"message": "Method not allowed"}),
        httpx.Response(200, json={"oauthUrl": "https://p/a", "element": "k"}),
    )
    client, _ = make_client(script)
    async with client:
        await client.get_oauth_url(
            "k", api_key="id", api_secret=APP_SECRET, callback_url="https://c/", state="s"
        )
    assert [r.method for r in script.requests] == ["POST", "GET"]
    assert script.requests[1].url.params["apiSecret"] == APP_SECRET


async def test_unknown_connector_is_named_in_the_error() -> None:
    script = Script(error(404, "No element found with key or id 'nope'."))
    client, _ = make_client(script)
    async with client:
        with pytest.raises(ConnectorNotFoundError) as raised:
            await client.get_oauth_url(
                "nope", api_key="id", api_secret=APP_SECRET, callback_url="https://c/", state="s"
            )
    assert "'nope'" in str(raised.value)
    assert raised.value.request_id == "5f0c1a2b3c4d5e6f7a8b9c0d"
    assert len(script.requests) == 1
    assert_no_secret(str(raised.value))


async def test_rejected_platform_secrets_are_not_retried() -> None:
    script = Script(error(401, "Invalid Organization or User secret, or invalid Element token."))
    client, sleeps = make_client(script)
    async with client:
        with pytest.raises(PlatformAuthenticationError) as raised:
            await client.find_instances()
    assert len(script.requests) == 1 and sleeps == []
    assert "user_secret" in str(raised.value) and "HTTP 401" in str(raised.value)
    assert_no_secret(str(raised.value))


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
async def test_transient_statuses_are_retried_with_growing_capped_delays(status: int) -> None:
    script = Script(error(status, "busy"), error(status, "busy"), httpx.Response(200, json=[]))
    client, sleeps = make_client(script)
    async with client:
        assert await client.find_instances() == []
    assert len(script.requests) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


async def test_retry_after_is_honoured_and_capped() -> None:
    script = Script(
        error(429, "slow down", **{"Retry-After": "7"}),
        error(503, "down", **{"Retry-After": "3600"}),
        error(503, "down", **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        httpx.Response(200, json=[]),
    )
    client, sleeps = make_client(script)
    async with client:
        await client.find_instances()
    assert sleeps == [7.0, 60.0, 0.0]


async def test_exhausted_retries_end_with_the_cause_in_words() -> None:
    script = Script(*(error(503, "down") for _ in range(4)))
    client, sleeps = make_client(script)
    async with client:
        with pytest.raises(PlatformUnavailableError) as raised:
            await client.find_instances()
    assert len(script.requests) == 4 and len(sleeps) == 3
    assert "kept failing (503)" in str(raised.value) and "4 attempt(s)" in str(raised.value)


@pytest.mark.parametrize("status", [400, 403, 404, 409])
async def test_other_client_errors_are_never_retried(status: int) -> None:
    script = Script(error(status, "no"))
    client, sleeps = make_client(script)
    async with client:
        with pytest.raises(ApiError):
            await client.find_instances()
    assert len(script.requests) == 1 and sleeps == []


async def test_connection_errors_are_retried_then_reported() -> None:
    script = Script(*(httpx.ConnectError("refused") for _ in range(4)))
    client, _ = make_client(script)
    async with client:
        with pytest.raises(PlatformUnavailableError) as raised:
            await client.find_instances()
    assert len(script.requests) == 4
    assert "api.example.test" in str(raised.value) and "ConnectError" in str(raised.value)


async def test_read_errors_are_retried_for_reads() -> None:
    script = Script(httpx.ReadError("reset"), httpx.Response(200, json=instance_json()))
    client, _ = make_client(script)
    async with client:
        instance = await client.get_instance(10001)
    assert instance.token is not None and instance.token.get_secret_value() == TOKEN


async def test_creating_an_instance_is_not_resent_when_the_answer_may_be_lost() -> None:
    for lost in (httpx.ReadError("reset"), error(502, "bad gateway"), error(504, "timeout")):
        script = Script(lost)
        client, _ = make_client(script)
        async with client:
            with pytest.raises(PlatformUnavailableError):
                await client.create_instance(request_for_instance())
        assert len(script.requests) == 1


async def test_creating_an_instance_is_resent_when_it_was_certainly_not_processed() -> None:
    script = Script(
        httpx.ConnectError("refused"),
        error(503, "down"),
        error(429, "slow"),
        httpx.Response(200, json=instance_json()),
    )
    client, _ = make_client(script)
    async with client:
        instance = await client.create_instance(request_for_instance())
    assert instance.id == 10001 and len(script.requests) == 4


async def test_create_body_carries_code_configuration_and_tags() -> None:
    script = Script(httpx.Response(200, json=instance_json()))
    client, _ = make_client(script)
    async with client:
        await client.create_instance(request_for_instance())
    body = json.loads(script.requests[0].content)
    assert body == {
        "element": {"key": "infusionsofterp"},
        "name": "acme",
        "configuration": {
            "infusionsoft.server": "dt123.infusionsoft.com",
            "oauth.api.secret": APP_SECRET,
        },
        "providerData": {"code": CODE},
        "tags": ["team-a"],
    }
    assert_no_secret(repr(request_for_instance()))


@pytest.mark.parametrize(
    ("provider_message", "expected"),
    [
        (
            '{"error":"invalid_grant","error_description":"Authorization code expired."}',
            AuthorizationCodeRejectedError,
        ),
        (
            '{"error":"invalid_client","error_description":"Invalid client credentials."}',
            OAuthAppRejectedError,
        ),
        ('{"error":"server_error","error_description":"Keap is down"}', ProviderError),
        ("Keap said something unstructured", ProviderError),
    ],
)
async def test_provider_refusals_map_to_their_own_errors(
    provider_message: str, expected: type[ApiError]
) -> None:
    script = Script(error(400, "Failed to obtain an OAuth access token.", provider_message))
    client, _ = make_client(script)
    async with client:
        with pytest.raises(expected) as raised:
            await client.create_instance(request_for_instance())
    assert raised.value.provider_message == provider_message
    assert_no_secret(str(raised.value))


async def test_expired_code_message_says_to_start_again() -> None:
    script = Script(
        error(
            400,
            "Failed",
            '{"error":"invalid_grant","error_description":"Authorization code expired."}',
        )
    )
    client, _ = make_client(script)
    async with client:
        with pytest.raises(AuthorizationCodeRejectedError) as raised:
            await client.create_instance(request_for_instance())
    assert "Authorization code expired." in str(raised.value)
    assert "start a new authorization run" in str(raised.value)


async def test_missing_code_is_a_plain_api_error() -> None:
    message = "You must provide an OAuth code in order to create an instance of this element"
    script = Script(error(400, message))
    client, _ = make_client(script)
    async with client:
        with pytest.raises(ApiError) as raised:
            await client.create_instance(request_for_instance())
    assert type(raised.value) is ApiError and message in str(raised.value)


async def test_hub_refusals_name_the_instance_problem() -> None:
    script = Script(error(401, "Invalid token"), error(403, "The instance 10001 is disabled."))
    client, _ = make_client(script, element_token=TOKEN)
    async with client:
        with pytest.raises(InstanceAuthenticationError) as unauthorized:
            await client.ping("erp")
        with pytest.raises(InstanceDisabledError):
            await client.ping("erp")
    assert "Re-authorize" in str(unauthorized.value)
    assert_no_secret(str(unauthorized.value))


async def test_unknown_instance() -> None:
    script = Script(error(404, "No instance found with id 5."))
    client, _ = make_client(script)
    async with client:
        with pytest.raises(InstanceNotFoundError, match="no instance 5"):
            await client.get_instance(5)


async def test_paging_follows_the_cursor_until_it_is_missing() -> None:
    def page(records: list[int], token: str | None) -> httpx.Response:
        headers = {"elements-returned-count": str(len(records)), "elements-total-count": "5"}
        if token:
            headers["elements-next-page-token"] = token
        return httpx.Response(200, json=[{"id": i} for i in records], headers=headers)

    script = Script(page([1, 2], "c1"), page([3, 4], "c2"), page([5], None))
    client, _ = make_client(script, element_token=TOKEN)
    async with client:
        ids = [record["id"] async for record in client.iter_records("erp", "contacts", page_size=2)]
    assert ids == [1, 2, 3, 4, 5]
    assert [r.url.params.get("nextPage") for r in script.requests] == [None, "c1", "c2"]
    assert all(r.url.params["pageSize"] == "2" for r in script.requests)


async def test_paging_stops_on_an_empty_page_and_refuses_a_looping_cursor() -> None:
    empty = httpx.Response(
        200, json=[], headers={"elements-returned-count": "0", "elements-next-page-token": "x"}
    )
    script = Script(empty)
    client, _ = make_client(script, element_token=TOKEN)
    async with client:
        assert [r async for r in client.iter_records("erp", "contacts")] == []

    same = {"elements-next-page-token": "again", "elements-returned-count": "1"}
    script = Script(*(httpx.Response(200, json=[{"id": 1}], headers=same) for _ in range(3)))
    client, _ = make_client(script, element_token=TOKEN)
    async with client:
        with pytest.raises(ApiError, match="same page cursor"):
            _ = [r async for r in client.iter_records("erp", "contacts")]


async def test_user_input_cannot_change_the_path() -> None:
    script = Script(error(404, "nope"))
    client, _ = make_client(script)
    async with client:
        with pytest.raises(ConnectorNotFoundError):
            await client.get_element("../instances")
    assert script.requests[0].url.raw_path == b"/elements/api-v2/elements/..%2Finstances"


@pytest.mark.parametrize("body", [{"records": []}, [{"id": 1}, 2], ["text"]])
async def test_a_page_that_is_not_a_list_of_records_is_refused(body: object) -> None:
    script = Script(httpx.Response(200, json=body))
    client, _ = make_client(script, element_token=TOKEN)
    async with client:
        with pytest.raises(ApiError, match="list of records"):
            _ = [r async for r in client.iter_records("erp", "contacts")]


async def test_clients_share_one_verifying_tls_context() -> None:
    from open_connectors.client import shared_tls_context

    first = OpenConnectorsClient(base_url=BASE, user_secret=USER, organization_secret=ORG)
    second = OpenConnectorsClient(base_url=BASE, user_secret=USER, organization_secret=ORG)
    async with first, second:
        context = shared_tls_context()
        assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname
        for client in (first, second):
            pool = client._http._transport._pool  # httpx's default transport
            assert pool._ssl_context is context


# -- hardening -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "9" * 400,
        "Wed, 21 Oct 99999999999999999999 07:28:00 GMT",
        "Wed, 21 Oct 2015 99999999999999999999:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ],
)
async def test_an_absurd_retry_after_is_clamped_and_the_answer_closed(value: str) -> None:
    answers: list[httpx.Response] = []

    def busy(request: httpx.Request) -> httpx.Response:
        answers.append(error(503, "busy", **{"Retry-After": value}))
        return answers[-1]

    script = Script(busy, httpx.Response(200, json=[]))
    client, sleeps = make_client(script)
    async with client:
        assert await client.find_instances() == []
    assert sleeps == [60.0]
    assert answers[0].is_closed


@pytest.mark.parametrize("segment", [".", "..", ""])
async def test_dot_segments_are_refused_before_any_request(segment: str) -> None:
    script = Script()
    client, _ = make_client(script, element_token=TOKEN)
    async with client:
        with pytest.raises(ConfigurationError):
            await client.get_element(segment)
        with pytest.raises(ConfigurationError):
            await client.ping(segment)
        with pytest.raises(ConfigurationError):
            await client.get_page("erp", f"contacts/{segment}/x")
    assert script.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        {"id": "not-a-number", "name": "acme", "token": TOKEN},
        {"id": 1, "name": ["acme", TOKEN], "token": TOKEN},
        {"id": 1, "name": "acme", "token": TOKEN, "tags": TOKEN},
        [TOKEN],
    ],
)
async def test_a_malformed_answer_names_fields_never_values(answer: object) -> None:
    script = Script(httpx.Response(200, json=answer))
    client, _ = make_client(script)
    async with client:
        with pytest.raises(ApiError) as raised:
            await client.get_instance(1)
    text = str(raised.value)
    assert "unexpected shape" in text and TOKEN[:4] not in text
    assert raised.value.__suppress_context__
    assert "validation error" not in "".join(traceback.format_exception(raised.value))


async def test_an_answer_that_is_not_json_is_an_api_error() -> None:
    script = Script(httpx.Response(200, content=b"<html>" + TOKEN.encode()))
    client, _ = make_client(script)
    async with client:
        with pytest.raises(ApiError, match="not JSON") as raised:
            await client.find_instances()
    assert TOKEN not in str(raised.value)


async def test_a_hub_403_is_disabled_only_when_the_platform_says_so() -> None:
    forbidden = error(
        403,
        "Access to the resource by the provider is forbidden",
        '{"error":"insufficient_scope","error_description":"No access to orders"}',
    )
    script = Script(
        error(403, "The instance 10001 is disabled."), forbidden, error(403, "Forbidden")
    )
    client, _ = make_client(script, element_token=TOKEN)
    async with client:
        with pytest.raises(InstanceDisabledError):
            await client.ping("erp")
        with pytest.raises(ProviderForbiddenError) as raised:
            await client.ping("erp")
        assert "No access to orders" in str(raised.value)
        assert not isinstance(raised.value, InstanceDisabledError)
        with pytest.raises(ProviderForbiddenError):
            await client.ping("erp")


@pytest.mark.parametrize(
    ("provider_message", "expected", "words"),
    [
        (
            '{"error":"invalid_request","error_description":"Invalid redirect_uri"}',
            OAuthAppRejectedError,
            "callback_url",
        ),
        (
            '{"error":"invalid_grant","error_description":'
            '"Unable to authenticate username and password"}',
            OAuthAppRejectedError,
            "api_key and api_secret",
        ),
        (
            '{"error":"invalid_grant","error_description":"Invalid authorization code."}',
            AuthorizationCodeRejectedError,
            "single-use",
        ),
        (
            '{"error":"invalid_request","error_description":"Invalid Refresh Token"}',
            ProviderError,
            "Invalid Refresh Token",
        ),
    ],
)
async def test_keap_token_errors_are_classified_by_content(
    provider_message: str, expected: type[ApiError], words: str
) -> None:
    script = Script(error(400, "Failed to obtain an OAuth access token.", provider_message))
    client, _ = make_client(script)
    async with client:
        with pytest.raises(expected) as raised:
            await client.create_instance(request_for_instance())
    assert type(raised.value) is expected and words in str(raised.value)


async def test_paging_stops_on_the_empty_page_after_a_last_page_with_a_token() -> None:
    def page(records: list[int], token: str) -> httpx.Response:
        headers = {"elements-returned-count": str(len(records)), "elements-next-page-token": token}
        return httpx.Response(200, json=[{"id": i} for i in records], headers=headers)

    # The real platform's habit: a token on the last page too, then an empty page
    # (here carrying the very same token again).
    script = Script(page([1, 2], "c1"), page([3], "c2"), page([], "c2"))
    client, _ = make_client(script, element_token=TOKEN)
    async with client:
        ids = [record["id"] async for record in client.iter_records("erp", "contacts")]
    assert ids == [1, 2, 3] and len(script.requests) == 3


def test_the_cloud_foundry_production_hosts_are_known() -> None:
    assert REGIONS["sap-eu10"] == (
        "https://api.openconnectors.eu10.ext.hana.ondemand.com/elements/api-v2"
    )
    assert REGIONS["sap-us10"] == (
        "https://api.openconnectors.us10.ext.hana.ondemand.com/elements/api-v2"
    )
    assert OpenConnectorsClient("sap-eu10", USER, ORG).base_url == REGIONS["sap-eu10"]
