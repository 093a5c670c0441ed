"""Authorizations that wait for consent, and those whose wait expired: listed and announced.

A run of the authorization or re-authorization flow is *waiting* while its state is
of type PAUSED (a suspension is a PAUSED state named "Suspended"). It *expired* when
its state is FAILED and the state just before was PAUSED with a `pause_timeout` that
had passed when it failed: the server fails such runs itself, without the project's
failure hook, so the health check says so. Decided from state types and details,
never from the server's message text (Prefect Cloud's server words them its own way).

Each expired run is announced once: `open-connectors.consent.expired` is emitted
and the run gets the `open-connectors-consent-expired` tag, the visible record that
it was announced.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from prefect.artifacts import acreate_table_artifact
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.types._datetime import now as utc_now
from prefect.utilities.urls import url_for
from pydantic import BaseModel

from flows.steps.events import CONSENT_EXPIRED, emit_consent_event
from flows.steps.names import AUTHENTICATE_FLOW, REAUTHORIZE_FLOW

EXPIRED_TAG = "open-connectors-consent-expired"
WAITS_ARTIFACT_KEY = "authorization-waits"
LOOK_BACK = timedelta(days=31)
MAX_RUNS = 200


class PendingConsent(BaseModel):
    """One authorization run that waits for consent, or whose wait expired.

    Attributes:
        flow_run_id: The run.
        run_name: The run's name.
        flow_name: The authorization or re-authorization flow.
        status: `waiting` or `expired`.
        instance: The instance name (or block) the consent is for.
        element_key: The connector key, when the run's parameters name it.
        expires_at: When the wait ends (waiting) or ended (expired).
        announced: For expired runs: whether an earlier check already announced it.
        flow_run_url: The run in the Prefect UI, when a UI URL is configured.
    """

    flow_run_id: str
    run_name: str
    flow_name: str
    status: Literal["waiting", "expired"]
    instance: str
    element_key: str = ""
    expires_at: datetime | None = None
    announced: bool = False
    flow_run_url: str | None = None


def wait_expired_at(states: list[State]) -> datetime | None:
    """When the wait that failed this run expired; None if the run did not fail that way.

    Args:
        states: The run's state history, in any order.
    """
    history = sorted(states, key=lambda state: state.timestamp)
    if len(history) < 2 or history[-1].type != StateType.FAILED:
        return None
    failed, before = history[-1], history[-2]
    timeout = before.state_details.pause_timeout if before.type == StateType.PAUSED else None
    if timeout is None or timeout > failed.timestamp:
        return None
    return timeout


def _text_parameter(run: FlowRun, name: str) -> str:
    value: Any = (run.parameters or {}).get(name)
    # A block picked in the UI is stored as {"$ref": …}; the run's name says it then.
    return value if isinstance(value, str) else ""


async def find_pending_consents(client: PrefectClient) -> list[PendingConsent]:
    """The authorization runs of the last month that wait for consent or whose wait expired."""
    runs = await client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[AUTHENTICATE_FLOW, REAUTHORIZE_FLOW])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PAUSED, StateType.FAILED])
            ),
            expected_start_time=FlowRunFilterExpectedStartTime(after_=utc_now("UTC") - LOOK_BACK),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=MAX_RUNS,
    )
    flow_names = {
        flow_id: (await client.read_flow(flow_id)).name for flow_id in {run.flow_id for run in runs}
    }
    pending: list[PendingConsent] = []
    for run in runs:
        if run.state is None:
            continue
        if run.state.type == StateType.PAUSED:
            status, expires_at = "waiting", run.state.state_details.pause_timeout
        else:
            expires_at = wait_expired_at(await client.read_flow_run_states(run.id))
            if expires_at is None:
                continue
            status = "expired"
        pending.append(
            PendingConsent(
                flow_run_id=str(run.id),
                run_name=run.name,
                flow_name=flow_names[run.flow_id],
                status=status,
                instance=_text_parameter(run, "instance_name")
                or _text_parameter(run, "instance_block")
                or run.name,
                element_key=_text_parameter(run, "element_key"),
                expires_at=expires_at,
                announced=EXPIRED_TAG in run.tags,
                flow_run_url=url_for(run),
            )
        )
    return pending


async def announce_expired(client: PrefectClient, pending: list[PendingConsent]) -> int:
    """Emit `open-connectors.consent.expired` for each expired run not announced yet.

    The tag goes on first, so a run is announced at most once even when two checks overlap
    closely; the event then follows.

    Returns:
        How many runs were announced now.
    """
    announced = 0
    for item in pending:
        if item.status != "expired" or item.announced:
            continue
        run = await client.read_flow_run(item.flow_run_id)
        if EXPIRED_TAG in run.tags:
            continue
        await client.update_flow_run(run.id, tags=[*run.tags, EXPIRED_TAG])
        emit_consent_event(
            CONSENT_EXPIRED,
            flow_run_id=item.flow_run_id,
            instance_name=item.instance,
            connector=item.element_key,
            element_key=item.element_key,
            block_name=_text_parameter(run, "instance_block"),
            expires_at=item.expires_at,
            flow_run_url=item.flow_run_url,
        )
        announced += 1
    return announced


async def report_pending_consents() -> list[PendingConsent]:
    """List waiting and expired authorizations in a table artifact; announce new expiries.

    Returns:
        The waiting and expired authorizations, newest first.
    """
    async with get_client() as client:
        pending = await find_pending_consents(client)
        await announce_expired(client, pending)
    rows = [
        {
            "status": item.status,
            "instance": item.instance,
            "connector": item.element_key,
            "flow": item.flow_name,
            "run": item.run_name,
            "wait ends": (f"{item.expires_at:%Y-%m-%d %H:%M} UTC" if item.expires_at else "never"),
            "run page": item.flow_run_url or item.flow_run_id,
        }
        for item in pending
    ]
    waiting = sum(item.status == "waiting" for item in pending)
    await acreate_table_artifact(
        table=rows,
        key=WAITS_ARTIFACT_KEY,
        description=(
            f"{waiting} authorization(s) waiting for consent, {len(pending) - waiting} whose "
            "wait expired (start a new run for those)."
        ),
    )
    return pending
