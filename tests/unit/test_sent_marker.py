"""The note that a run sent its code: on Prefect's own server, and when its database is busy."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import anyio
import pytest
from prefect import flow
from prefect.client.orchestration import PrefectClient, get_client

from blocks import prefect_client as prefect_client_module
from flows.steps.sent_marker import CodeSentMarker, send_at_most_once
from open_connectors import EnsuredInstance, InstanceOutcomeUnknownError, PlatformUnavailableError
from tests.unit.prefect_stand_in import PrefectServerStandIn


@flow
def noted_flow() -> None:
    """The runs' flow (never run: the test writes and reads their notes)."""


@pytest.fixture
async def prefect(prefect_harness: None) -> AsyncIterator[PrefectClient]:
    async with get_client() as client:
        yield client


@pytest.fixture
async def run_id(prefect: PrefectClient) -> UUID:
    return (await prefect.create_flow_run(noted_flow)).id


async def test_the_note_is_kept_once_written_and_gone_once_cleared(
    prefect: PrefectClient, run_id: UUID
) -> None:
    creation = CodeSentMarker(run_id, "creation")
    assert not await creation.exists()
    await creation.record("oc-run-1")
    await creation.record("oc-run-1")  # written already, by this run: kept
    assert await creation.exists()
    # Each purpose has its own note; the note holds the tag and the time, nothing secret.
    assert not await CodeSentMarker(run_id, "reauthorization").exists()
    note = json.loads(await prefect.read_flow_run_input(run_id, creation.key))
    assert note["tag"] == "oc-run-1" and set(note) == {"tag", "at"}
    await creation.clear()
    await creation.clear()  # gone already
    assert not await creation.exists()


@pytest.mark.parametrize(
    ("failure", "kept"),
    [
        # The platform said it was unavailable before it processed the code: send again.
        (PlatformUnavailableError("down"), False),
        # The answer was lost: the code may have been used; a Retry must only look up.
        (InstanceOutcomeUnknownError("lost", look_up_seconds=30), True),
    ],
)
async def test_the_note_stays_unless_the_answer_proves_the_code_unused(
    run_id: UUID, failure: Exception, kept: bool
) -> None:
    marker = CodeSentMarker(run_id, "creation")
    seen: list[bool] = []

    async def ensure(sent_before: bool, on_send: object) -> EnsuredInstance:
        seen.append(sent_before)
        await on_send()  # type: ignore[operator]
        raise failure

    with pytest.raises(type(failure)):
        await send_at_most_once(marker, "oc-run-1", ensure)
    assert seen == [False]
    assert await marker.exists() is kept
    if kept:  # the Retry of the run is told the code was sent
        with pytest.raises(type(failure)):
            await send_at_most_once(marker, "oc-run-1", ensure)
        assert seen == [False, True]


async def test_a_busy_databases_refusal_of_the_note_is_asked_again_soon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The note is written just before the code leaves: the person waits on it. Prefect's
    # client alone would ask again after 2 s (at least 1.6 s with its jitter).
    prefect = PrefectServerStandIn(refusals=2)
    monkeypatch.setattr(prefect_client_module, "get_client", prefect.client)
    started = time.monotonic()
    with anyio.fail_after(1.5):
        await CodeSentMarker(uuid4(), "creation").record("oc-run-1")
    assert prefect.requests == 3
    assert time.monotonic() - started < 1.5
