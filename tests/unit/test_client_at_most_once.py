"""Sending a single-use code at most once: `ensure_instance` and `ensure_reauthorized`.

A scripted platform (httpx.MockTransport) that can process a request and answer
something else, lag its lists behind writes, and ignore the tags filter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from open_connectors import (
    AuthorizationCodeRejectedError,
    ConfigurationError,
    InstanceBody,
    OpenConnectorsClient,
    PlatformUnavailableError,
    RetryPolicy,
)
from open_connectors.errors import DuplicateInstancesError, InstanceOutcomeUnknownError
from open_connectors.retry import look_up_delays
from open_connectors.tags import reauthorization_tag

BASE = "https://api.example.test/elements/api-v2"
CODE = "single-use-code-value"
TOKEN = "instance-token-value"
TAG = "prefect-flow-run-11111111-1111-4111-8111-111111111111"
CREATED_BY = "prefect-flow-run-22222222-2222-4222-8222-222222222222"
MARK = reauthorization_tag("33333333-3333-4333-8333-333333333333")

# What the platform answers to a processed request instead of its real answer.
Fault = Callable[[], httpx.Response]


def status(code: int) -> Fault:
    return lambda: httpx.Response(code, json={"requestId": "r" * 24, "message": "Gateway"})


def lost(error: type[httpx.TransportError]) -> Fault:
    def raise_it() -> httpx.Response:
        raise error("lost after the platform processed it")

    return raise_it


@dataclass
class Platform:
    """Instances by id; writes can be processed and answered with a fault; lists can lag."""

    instances: dict[int, dict[str, Any]] = field(default_factory=dict)
    lag_reads: int = 0  # how many list reads (or reads by id, for tags) miss a fresh write
    ignore_filter: bool = False
    write_faults: list[Fault] = field(default_factory=list)  # processed, then this answer
    refuse_writes: list[Fault] = field(default_factory=list)  # answered, not processed
    fail_everything: int | None = None  # answer every request with this status
    requests: list[tuple[str, str]] = field(default_factory=list)
    codes_received: list[str] = field(default_factory=list)
    _hidden: dict[int, int] = field(default_factory=dict)  # id -> reads left hidden
    _stale_tags: dict[int, list[str]] = field(default_factory=dict)

    def add(self, instance_id: int, tags: list[str]) -> None:
        self.instances[instance_id] = {"id": instance_id, "name": "acme", "tags": tags}

    def sends(self) -> list[str]:
        return [method for method, path in self.requests if method in ("POST", "PUT")]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if self.fail_everything is not None:
            return httpx.Response(self.fail_everything, json={"message": "down"})
        path = request.url.path.removeprefix("/elements/api-v2")
        if request.method in ("POST", "PUT") and self.refuse_writes:
            return self.refuse_writes.pop(0)()
        if request.method == "GET" and path == "/instances":
            return self._list(request)
        if request.method == "POST" and path == "/instances":
            body = json.loads(request.content)
            self.codes_received.append(body["providerData"]["code"])
            instance_id = 10001 + len(self.instances)
            self.add(instance_id, body["tags"])
            self._hidden[instance_id] = self.lag_reads
            return self._answer(instance_id)
        instance_id = int(path.rsplit("/", 1)[1])
        if instance_id not in self.instances:
            return httpx.Response(404, json={"message": "No instance found."})
        if request.method == "PUT":
            body = json.loads(request.content)
            self.codes_received.append(body["providerData"]["code"])
            self._stale_tags[instance_id] = list(self.instances[instance_id]["tags"])
            self._hidden[instance_id] = self.lag_reads
            self.instances[instance_id]["tags"] = body["tags"]
            return self._answer(instance_id)
        shown = dict(self.instances[instance_id], token=TOKEN)
        if self._hidden.get(instance_id, 0) > 0 and instance_id in self._stale_tags:
            self._hidden[instance_id] -= 1
            shown["tags"] = self._stale_tags[instance_id]
        return httpx.Response(200, json=shown)

    def _answer(self, instance_id: int) -> httpx.Response:
        if self.write_faults:
            return self.write_faults.pop(0)()
        return httpx.Response(200, json=dict(self.instances[instance_id], token=TOKEN))

    def _list(self, request: httpx.Request) -> httpx.Response:
        wanted = request.url.params.get_list("tags[]")
        shown = []
        for instance_id, instance in self.instances.items():
            if self._hidden.get(instance_id, 0) > 0 and instance_id not in self._stale_tags:
                self._hidden[instance_id] -= 1
                continue
            if self.ignore_filter or all(tag in instance["tags"] for tag in wanted):
                shown.append(instance)  # lists carry no token
        return httpx.Response(200, json=shown)


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(
    platform: Platform, *, lookup_seconds: float = 60, attempts: int = 4
) -> tuple[OpenConnectorsClient, Sleeps]:
    sleeps = Sleeps()
    client = OpenConnectorsClient(
        BASE,
        "user-secret",
        "org-secret",
        retry_policy=RetryPolicy(max_attempts=attempts),
        transport=httpx.MockTransport(platform),
        sleep=sleeps,
        ambiguous_lookup_seconds=lookup_seconds,
    )
    return client, sleeps


def body(tags: list[str] | None = None) -> InstanceBody:
    return InstanceBody(
        element_key="infusionsofterp",
        name="acme",
        code=SecretStr(CODE),
        configuration={"infusionsoft.server": "dt123.infusionsoft.com"},
        tags=tags if tags is not None else ["team-a"],
    )


# -- creation ------------------------------------------------------------------------------


async def test_creates_once_when_nothing_carries_the_tag() -> None:
    platform = Platform()
    client, _ = client_for(platform)
    async with client:
        ensured = await client.ensure_instance(body(), run_tag=TAG)
    assert ensured.created and ensured.instance.token is not None
    instances = "/elements/api-v2/instances"
    assert platform.requests == [("GET", instances), ("POST", instances)]
    assert platform.instances[10001]["tags"] == ["team-a", TAG]


@pytest.mark.parametrize(
    "fault",
    [
        *(status(500), status(502), status(504)),
        *(lost(httpx.ReadTimeout), lost(httpx.ReadError)),
        *(lost(httpx.RemoteProtocolError), lost(httpx.WriteError)),
    ],
    ids=["500", "502", "504", "read-timeout", "read-error", "disconnect", "write-error"],
)
async def test_an_ambiguous_answer_with_a_lagging_list_sends_the_code_exactly_once(
    fault: Fault,
) -> None:
    platform = Platform(lag_reads=3, write_faults=[fault])
    client, sleeps = client_for(platform)
    async with client:
        ensured = await client.ensure_instance(body(), run_tag=TAG)
    assert not ensured.created and ensured.instance.id == 10001
    assert ensured.instance.token is not None
    assert platform.codes_received == [CODE]  # GET, POST, GET, GET, GET, GET: never a 2nd POST
    assert [method for method, _ in platform.requests] == ["GET", "POST"] + ["GET"] * 5
    assert sleeps == [1.0, 2.0, 4.0, 8.0]


async def test_a_lag_longer_than_the_bound_ends_unknown_and_never_resends() -> None:
    platform = Platform(lag_reads=1000, write_faults=[status(504)])
    client, sleeps = client_for(platform, lookup_seconds=20)
    async with client:
        with pytest.raises(InstanceOutcomeUnknownError) as raised:
            await client.ensure_instance(body(), run_tag=TAG)
    assert platform.sends() == ["POST"]
    assert sum(sleeps) == pytest.approx(20)
    message = str(raised.value)
    assert "may exist" in message and "Retry of this same run" in message
    assert "new authorization" not in message and CODE not in message
    assert TAG in message and "HTTP 504" in message


async def test_a_retry_of_the_run_then_adopts_the_instance() -> None:
    platform = Platform(lag_reads=1000, write_faults=[status(504)])
    client, _ = client_for(platform, lookup_seconds=5)
    async with client:
        with pytest.raises(InstanceOutcomeUnknownError):
            await client.ensure_instance(body(), run_tag=TAG)
        platform._hidden.clear()  # the list caught up
        ensured = await client.ensure_instance(body(), run_tag=TAG, sent_before=True)
    assert not ensured.created and ensured.instance.id == 10001
    assert platform.sends() == ["POST"]


async def test_sent_before_never_sends_only_looks_up() -> None:
    platform = Platform()
    client, sleeps = client_for(platform, lookup_seconds=7)
    async with client:
        with pytest.raises(InstanceOutcomeUnknownError) as raised:
            await client.ensure_instance(body(), run_tag=TAG, sent_before=True)
    assert platform.sends() == []
    assert len(platform.requests) == 1 + len(look_up_delays(7)) and sum(sleeps) == 7
    assert "earlier attempt" in str(raised.value)


async def test_sent_before_adopts_what_shows() -> None:
    platform = Platform()
    platform.add(10001, ["team-a", TAG])
    client, _ = client_for(platform)
    async with client:
        ensured = await client.ensure_instance(body(), run_tag=TAG, sent_before=True)
    assert not ensured.created and platform.sends() == []


async def test_on_send_is_awaited_right_before_the_code_leaves() -> None:
    platform = Platform()
    seen: list[int] = []

    async def mark() -> None:
        seen.append(len(platform.requests))

    client, _ = client_for(platform)
    async with client:
        await client.ensure_instance(body(), run_tag=TAG, on_send=mark)
    assert seen == [1]  # after the look-up, before the POST

    adopted = Platform()
    adopted.add(10001, [TAG])
    client, _ = client_for(adopted)
    async with client:
        await client.ensure_instance(body(), run_tag=TAG, on_send=mark)
    assert seen == [1]  # adopted: nothing sent, so not called


@pytest.mark.parametrize("refusal", [status(503), status(429), status(408)])
async def test_answers_proving_nothing_was_processed_allow_sending_again(refusal: Fault) -> None:
    platform = Platform(refuse_writes=[refusal, lost(httpx.ConnectError)])
    client, _ = client_for(platform)
    async with client:
        ensured = await client.ensure_instance(body(), run_tag=TAG)
    assert ensured.created and platform.sends() == ["POST"] * 3
    assert platform.codes_received == [CODE]  # only the last one was processed


async def test_a_lasting_outage_costs_exactly_max_attempts_requests() -> None:
    """The count the client's docstring promises: A requests, nothing sent."""
    platform = Platform(fail_everything=503)
    client, _ = client_for(platform, attempts=4)
    async with client:
        with pytest.raises(PlatformUnavailableError):
            await client.ensure_instance(body(), run_tag=TAG)
    assert len(platform.requests) == 4 and platform.sends() == []


async def test_not_processed_posts_exhausted_is_unavailable_not_unknown() -> None:
    platform = Platform(refuse_writes=[status(503)] * 4)
    client, _ = client_for(platform, attempts=4)
    async with client:
        with pytest.raises(PlatformUnavailableError):
            await client.ensure_instance(body(), run_tag=TAG)
    assert [m for m, _ in platform.requests] == ["GET"] + ["POST"] * 4
    assert platform.codes_received == []


async def test_the_worst_case_request_count_of_the_docstring() -> None:
    """Every step needs all its attempts: (N + 3) * A requests, the code sent once."""
    attempts, polls = 4, len(look_up_delays(60))
    down = httpx.Response(503, json={"message": "down"})
    found = {"id": 10001, "name": "acme", "tags": [TAG]}
    answers = (
        [down] * 3 + [httpx.Response(200, json=[])]  # the first look-up
        + [down] * 3 + [httpx.Response(504, json={"message": "gateway"})]  # the POSTs
        + [down] * attempts * (polls - 1)  # look-ups that all fail
        + [down] * 3 + [httpx.Response(200, json=[found])]  # the last one finds it
        + [down] * 3 + [httpx.Response(200, json={**found, "token": TOKEN})]  # its token
    )  # fmt: skip
    requests: list[httpx.Request] = []

    def script(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return answers[len(requests) - 1]

    client = OpenConnectorsClient(
        BASE,
        "user-secret",
        "org-secret",
        retry_policy=RetryPolicy(max_attempts=attempts),
        transport=httpx.MockTransport(script),
        sleep=Sleeps(),
    )
    async with client:
        ensured = await client.ensure_instance(body(), run_tag=TAG)
    assert not ensured.created and ensured.instance.id == 10001
    assert len(requests) == len(answers) == (polls + 3) * attempts == 52
    assert [r.method for r in requests].count("POST") == attempts
    # The code was resent only after the three 503s that prove nothing was processed.
    assert sum(CODE.encode() in r.content for r in requests) == attempts


async def test_a_refused_code_is_not_looked_up_nor_resent() -> None:
    provider = '{"error":"invalid_grant","error_description":"Authorization code expired."}'
    refusal = httpx.Response(400, json={"message": "Failed", "providerMessage": provider})
    platform = Platform(refuse_writes=[lambda: refusal])
    client, sleeps = client_for(platform)
    async with client:
        with pytest.raises(AuthorizationCodeRejectedError):
            await client.ensure_instance(body(), run_tag=TAG)
    assert platform.sends() == ["POST"] and sleeps == []


# -- adoption by exact tag -------------------------------------------------------------------


async def test_a_platform_ignoring_the_filter_only_hands_over_the_exact_tag() -> None:
    platform = Platform(ignore_filter=True)
    platform.add(10001, ["someone-else", CREATED_BY])
    platform.add(10002, ["team-a", TAG])
    client, _ = client_for(platform)
    async with client:
        ensured = await client.ensure_instance(body(), run_tag=TAG)
    assert not ensured.created and ensured.instance.id == 10002


async def test_a_platform_ignoring_the_filter_with_no_match_creates() -> None:
    platform = Platform(ignore_filter=True)
    platform.add(10001, [CREATED_BY])
    platform.add(10002, [f"{TAG}-longer"])
    client, _ = client_for(platform)
    async with client:
        ensured = await client.ensure_instance(body(), run_tag=TAG)
    assert ensured.created and ensured.instance.id == 10003


async def test_two_instances_with_the_tag_are_refused_naming_both() -> None:
    platform = Platform()
    platform.add(10001, [TAG])
    platform.add(10002, ["x", TAG])
    client, _ = client_for(platform)
    async with client:
        with pytest.raises(DuplicateInstancesError) as raised:
            await client.ensure_instance(body(), run_tag=TAG)
    assert "10001" in str(raised.value) and "10002" in str(raised.value)
    assert raised.value.instance_ids == [10001, 10002] and platform.sends() == []


@pytest.mark.parametrize("tag", ["prefect-flow-run-x", " Prefect-Reauthorized-By-y"])
async def test_reserved_user_tags_are_refused_before_any_request(tag: str) -> None:
    platform = Platform()
    client, _ = client_for(platform)
    async with client:
        with pytest.raises(ConfigurationError, match="reserves"):
            await client.ensure_instance(body(["ok", tag]), run_tag=TAG)
    assert platform.requests == []


# -- re-authorization ------------------------------------------------------------------------


def reauthorizable() -> Platform:
    platform = Platform()
    platform.add(7, ["team-a", CREATED_BY, reauthorization_tag("an-older-run")])
    return platform


async def test_reauthorization_keeps_tags_and_replaces_older_marks() -> None:
    platform = reauthorizable()
    client, _ = client_for(platform)
    async with client:
        ensured = await client.ensure_reauthorized(7, body([]), mark_tag=MARK)
    assert ensured.created
    assert platform.instances[7]["tags"] == ["team-a", CREATED_BY, MARK]
    assert [m for m, _ in platform.requests] == ["GET", "PUT"]


async def test_reauthorization_already_marked_is_adopted() -> None:
    platform = Platform()
    platform.add(7, [CREATED_BY, MARK])
    client, _ = client_for(platform)
    async with client:
        ensured = await client.ensure_reauthorized(7, body(), mark_tag=MARK)
    assert not ensured.created and platform.sends() == []


@pytest.mark.parametrize("fault", [status(504), lost(httpx.ReadTimeout)], ids=["504", "timeout"])
async def test_an_ambiguous_put_with_lagging_tags_is_sent_once(fault: Fault) -> None:
    platform = reauthorizable()
    platform.lag_reads = 2
    platform.write_faults = [fault]
    client, _ = client_for(platform)
    async with client:
        ensured = await client.ensure_reauthorized(7, body(), mark_tag=MARK)
    assert not ensured.created and MARK in ensured.instance.tags
    assert platform.codes_received == [CODE]
    assert [m for m, _ in platform.requests] == ["GET", "PUT", "GET", "GET", "GET"]


async def test_an_ambiguous_put_that_never_shows_ends_unknown() -> None:
    platform = reauthorizable()
    platform.lag_reads = 1000
    platform.write_faults = [status(502)]
    client, _ = client_for(platform, lookup_seconds=3)
    async with client:
        with pytest.raises(InstanceOutcomeUnknownError, match="Retry of this same run"):
            await client.ensure_reauthorized(7, body(), mark_tag=MARK)
    assert platform.sends() == ["PUT"]


async def test_reauthorization_sent_before_never_puts() -> None:
    platform = reauthorizable()
    client, _ = client_for(platform, lookup_seconds=3)
    async with client:
        with pytest.raises(InstanceOutcomeUnknownError):
            await client.ensure_reauthorized(7, body(), mark_tag=MARK, sent_before=True)
    assert platform.sends() == []
