"""Following and answering an authorization run through the Prefect API.

Used by the demo, the end-to-end tests and the benchmarks: the same calls a person's
browser makes through the Prefect UI.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from tooling.devstack.processes import StackError

FINAL_STATES = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
_LINK = re.compile(r"\]\(<([^>]+)>\)")


class ResumeRefused(StackError):
    """The server refused to resume the run (not paused, expired, or input rejected)."""


async def wait_for_form(
    client: PrefectClient, flow_run_id: UUID, *, timeout: float = 60, poll_seconds: float = 0.2
) -> tuple[FlowRun, str]:
    """Wait until the run waits for its answer and its form is stored; return the description.

    `poll_seconds` is how often the run is read (the benchmarks look more often).

    Raises:
        StackError: The run ended, or did not wait within `timeout`.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await client.read_flow_run(flow_run_id)
        state = run.state
        if state is not None and state.type in FINAL_STATES:
            raise StackError(f"The run ended {state.name} before waiting: {state.message}")
        keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
        if keyset:
            description = await read_run_input(client, flow_run_id, keyset["description"])
            if description:
                return run, json.loads(description)
        await asyncio.sleep(poll_seconds)
    raise StackError(f"The run {flow_run_id} did not wait for an answer within {timeout:.0f} s.")


async def read_run_input(client: PrefectClient, flow_run_id: UUID, key: str) -> str | None:
    """A run input's stored value, or None when there is none."""
    try:
        return await client.read_flow_run_input(flow_run_id, key)
    except ObjectNotFound:
        return None
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise


async def _form_pending(client: PrefectClient, flow_run_id: UUID) -> bool:
    """Whether the run waits with a resume form that is not stored yet."""
    state = (await client.read_flow_run(flow_run_id)).state
    if state is None or not state.is_paused():
        return False
    keyset = state.state_details.run_input_keyset
    return bool(keyset) and await read_run_input(client, flow_run_id, keyset["schema"]) is None


def consent_link(description: str) -> str:
    """The consent link inside the resume form's description."""
    match = _LINK.search(description)
    if not match:
        raise StackError("The run's description holds no consent link.")
    return match.group(1)


async def resume_with_answer(
    client: PrefectClient,
    flow_run_id: UUID,
    run_input: dict[str, Any],
    *,
    attempts: int = 20,
    delay: float = 0.5,
) -> None:
    """Resume a waiting run with an answer, as the Prefect UI's resume form does.

    A run that has just started waiting has no stored form for a moment: the resume
    waits for it (read from the run's state details and inputs, never from the
    server's wording). Any refusal of the resume itself is final.

    Raises:
        ResumeRefused: The server refused the resume.
    """
    reason = f"its resume form was not stored within {attempts * delay:.0f} s"
    for _ in range(attempts):
        if await _form_pending(client, flow_run_id):
            await asyncio.sleep(delay)
            continue
        result = await client.resume_flow_run(flow_run_id, run_input=run_input)
        if result.status == SetStateStatus.ACCEPT:
            return
        reason = getattr(result.details, "reason", None) or str(result.status)
        break
    raise ResumeRefused(f"The server refused to resume run {flow_run_id}: {reason}")


async def wait_for_final(
    client: PrefectClient, flow_run_id: UUID, *, timeout: float = 120, poll_seconds: float = 0.25
) -> FlowRun:
    """Wait until the run is Completed, Failed, Crashed or Cancelled (read every `poll_seconds`).

    Raises:
        StackError: The run is not final within `timeout`.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.type in FINAL_STATES:
            return run
        await asyncio.sleep(poll_seconds)
    raise StackError(f"The run {flow_run_id} did not end within {timeout:.0f} s.")
