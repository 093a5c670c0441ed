"""Re-authorization through the client's at-most-once: one `PUT` per run, tags kept, a lost
answer adopted rather than resent."""

from __future__ import annotations

import json
from uuid import uuid4

import httpx
import pytest
from pydantic import SecretStr

from open_connectors import (
    AuthorizationCodeRejectedError,
    InstanceBody,
    InstanceNotFoundError,
    InstanceOutcomeUnknownError,
    OpenConnectorsClient,
    creating_run_id,
    reauthorization_tag,
    tags_after_reauthorization,
)

BASE = "https://api.example.test/elements/api-v2"
RUN = "0b7e2c3a-1f6d-4c1e-9a55-3d2f1e0c9b8a"
CREATED_BY = "prefect-flow-run-5f0c1d2e-0000-4000-8000-000000000001"


class FakePlatform:
    """One instance; `PUT` re-authorizes it. `lose_answers` drops that many PUT answers
    after applying them (as a connection lost on the way back)."""

    def __init__(self, *, tags: list[str], lose_answers: int = 0, exists: bool = True) -> None:
        self.tags = tags
        self.lose_answers = lose_answers
        self.exists = exists
        self.puts: list[dict[str, object]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if not self.exists:
            return httpx.Response(404, json={"message": "No instance found with id 7."})
        if request.method == "PUT":
            body = json.loads(request.content)
            self.puts.append(body)
            if body["providerData"]["code"] == "used-code":
                return httpx.Response(
                    400,
                    json={
                        "message": "Failed to obtain an OAuth access token from the provider.",
                        "providerMessage": json.dumps(
                            {"error": "invalid_grant", "error_description": "used"}
                        ),
                    },
                )
            self.tags = body["tags"]
            if self.lose_answers:
                self.lose_answers -= 1
                raise httpx.ReadError("connection lost", request=request)
        return httpx.Response(
            200, json={"id": 7, "name": "Acme ERP", "token": "tok", "tags": self.tags}
        )

    def client(self) -> OpenConnectorsClient:
        async def no_sleep(_: float) -> None:
            return None

        return OpenConnectorsClient(
            BASE,
            "user",
            "org",
            transport=httpx.MockTransport(self.handler),
            sleep=no_sleep,
            ambiguous_lookup_seconds=5,
        )


async def reauthorize(client: OpenConnectorsClient, request: InstanceBody) -> tuple[object, bool]:
    ensured = await client.ensure_reauthorized(7, request, mark_tag=reauthorization_tag(RUN))
    return ensured.instance, ensured.created


def body(code: str = "fresh-code") -> InstanceBody:
    return InstanceBody(
        element_key="infusionsofterp",
        name="Acme ERP",
        code=SecretStr(code),
        configuration={"infusionsoft.server": "dt123.infusionsoft.com"},
        tags=[],
    )


async def test_one_put_keeps_every_tag_and_adds_this_runs_mark() -> None:
    platform = FakePlatform(tags=["team-a", CREATED_BY, reauthorization_tag("an-older-run")])
    async with platform.client() as client:
        instance, updated = await reauthorize(client, body())
    assert updated and instance.id == 7
    assert len(platform.puts) == 1
    sent = platform.puts[0]
    assert sent["providerData"] == {"code": "fresh-code"}
    assert sent["tags"] == ["team-a", CREATED_BY, reauthorization_tag(RUN)]


async def test_a_lost_answer_is_adopted_without_sending_the_code_again() -> None:
    platform = FakePlatform(tags=[CREATED_BY], lose_answers=1)
    async with platform.client() as client:
        instance, updated = await reauthorize(client, body())
    assert len(platform.puts) == 1
    assert not updated and reauthorization_tag(RUN) in instance.tags


async def test_a_replayed_run_finds_its_mark_and_sends_nothing() -> None:
    platform = FakePlatform(tags=[CREATED_BY, reauthorization_tag(RUN)])
    async with platform.client() as client:
        _, updated = await reauthorize(client, body())
    assert platform.puts == [] and not updated


async def test_a_refused_code_is_not_retried() -> None:
    platform = FakePlatform(tags=[CREATED_BY])
    async with platform.client() as client:
        with pytest.raises(AuthorizationCodeRejectedError):
            await reauthorize(client, body("used-code"))
    assert len(platform.puts) == 1


async def test_a_deleted_instance_cannot_be_reauthorized() -> None:
    platform = FakePlatform(tags=[], exists=False)
    async with platform.client() as client:
        with pytest.raises(InstanceNotFoundError):
            await reauthorize(client, body())
    assert platform.puts == []


async def test_a_platform_that_keeps_losing_answers_never_gets_the_code_twice() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "PUT":
            raise httpx.ReadError("connection lost", request=request)
        return httpx.Response(200, json={"id": 7, "name": "a", "tags": []})

    async def no_sleep(_: float) -> None:
        return None

    client = OpenConnectorsClient(
        BASE,
        "u",
        "o",
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
        ambiguous_lookup_seconds=5,
    )
    async with client:
        with pytest.raises(InstanceOutcomeUnknownError):
            await reauthorize(client, body())
    # The code left once; after the lost answer only reads follow, never a second PUT.
    assert calls.count("PUT") == 1 and calls[0] == "GET" and set(calls[2:]) == {"GET"}


def test_marks_of_earlier_reauthorizations_are_replaced() -> None:
    tags = tags_after_reauthorization(
        ["x", reauthorization_tag("a"), CREATED_BY], reauthorization_tag("b")
    )
    assert tags == ["x", CREATED_BY, reauthorization_tag("b")]


def test_the_creating_run_is_read_from_the_instance_tags() -> None:
    run_id = uuid4()
    assert creating_run_id(["team", f"prefect-flow-run-{run_id}"]) == run_id
    assert creating_run_id(["prefect-flow-run-not-a-uuid", "other"]) is None
    assert creating_run_id([reauthorization_tag(str(run_id))]) is None
