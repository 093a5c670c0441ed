"""Check that every saved connector instance still answers; announce what changed.

    saved instances ──▶ check_instance (each) ──▶ record and announce ──▶ table artifact
    (ConnectorInstance    ping; if refused, ask       broken / recovered      one row per
     blocks)              the platform why            events, optional        instance
                                                      re-authorization

Run daily by the `verify-connector-instances` deployment (and on demand). An
instance that stops answering (deleted, disabled, credentials revoked) makes
`open-connectors.instance.broken`; one that answers again makes
`open-connectors.instance.recovered`. With `reauthorize_broken`, an instance whose
grant was revoked gets a `reauthorize-connector-instance` run, once per breakage.
"""

# No `from __future__ import annotations` here: a served run gets its flow pickled by
# value (deployments/serve.py), and the parameters' types must travel with it.
import asyncio
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel

from blocks import ConnectorInstance
from blocks.run_form import InstanceBlockName
from flows.steps.blocks import load_block
from flows.steps.events import INSTANCE_BROKEN, INSTANCE_RECOVERED, emit_instance_event
from flows.steps.health import (
    REAUTHORIZABLE,
    HealthRecord,
    InstanceCheck,
    check_saved_instance,
    next_record,
    read_record,
    utc_now,
    write_record,
)
from flows.steps.names import REAUTHORIZE_DEPLOYMENT, REAUTHORIZE_FLOW, VERIFY_FLOW, full_name
from flows.steps.parameters import check_block_name
from flows.steps.pending_consents import report_pending_consents
from flows.steps.saved_instances import saved_instance_names
from flows.steps.supervision import watch_supervision
from open_connectors import OpenConnectorsError

REAUTHORIZE_DEPLOYMENT_NAME = full_name(REAUTHORIZE_FLOW, REAUTHORIZE_DEPLOYMENT)
HEALTH_ARTIFACT_KEY = "connector-instance-health"
MAX_CONCURRENT_CHECKS = 8


class InstanceHealth(BaseModel):
    """One instance's line in the report.

    Attributes:
        check: What this check found.
        since: Since when the instance is in its current status (as far as known).
        change: `broken` or `recovered` when this check changed the status.
        reauthorization_flow_run: The re-authorization run for this breakage, if any.
    """

    check: InstanceCheck
    since: str | None = None
    change: str | None = None
    reauthorization_flow_run: str | None = None


@task(name="check_instance", persist_result=False)
async def check_instance(block_name: str) -> InstanceCheck:
    """Load a saved instance and ping it; a block that cannot be loaded is reported too."""
    try:
        saved = await load_block(ConnectorInstance, block_name, "instance_blocks")
    except OpenConnectorsError as exc:
        return InstanceCheck(block_name=block_name, status="unknown", detail=str(exc))
    check = await check_saved_instance(saved, block_name)
    log = get_run_logger().info if check.status == "ok" else get_run_logger().warning
    log("%s (instance %s) is %s: %s", block_name, check.instance_id, check.status, check.detail)
    return check


async def _record_and_announce(
    check: InstanceCheck, *, reauthorize: bool, deployment: str, flow_run_id: str
) -> InstanceHealth:
    """Compare with the kept record, emit the change, start a re-authorization if asked."""
    previous = await read_record(check.block_name)
    record, change = next_record(previous, check, utc_now())
    if change is not None:
        _announce(check, change, previous, flow_run_id)
    if record is None:
        return InstanceHealth(check=check)
    if record.status == "broken" and reauthorize and check.problem in REAUTHORIZABLE:
        record = await _ensure_reauthorization(record, check, deployment, flow_run_id)
    if record.status == "ok":
        record = record.model_copy(update={"reauthorization_flow_run": None})
    # Announced before written: a crash in between repeats an event rather than losing it.
    await write_record(check.block_name, record)
    return InstanceHealth(
        check=check,
        since=f"{record.since:%Y-%m-%d %H:%M} UTC",
        change=change,
        reauthorization_flow_run=record.reauthorization_flow_run,
    )


def _announce(
    check: InstanceCheck, change: str, previous: HealthRecord | None, flow_run_id: str
) -> None:
    assert check.instance_id is not None
    if change == "broken":
        name = INSTANCE_BROKEN
        payload = {"problem": check.problem, "reason": check.detail[:1000]}
    else:
        name = INSTANCE_RECOVERED
        payload = {
            "previous_problem": previous.problem if previous else None,
            "broken_since": previous.since.isoformat() if previous else None,
        }
    emit_instance_event(
        name,
        instance_id=check.instance_id,
        instance_name=check.instance_name,
        element_key=check.element_key,
        block_name=check.block_name,
        payload={**payload, "flow_run_id": flow_run_id},
    )
    get_run_logger().warning(
        "Instance %s (%s) is %s; event %s emitted.",
        check.instance_id,
        check.block_name,
        change,
        name,
    )


async def _ensure_reauthorization(
    record: HealthRecord, check: InstanceCheck, deployment: str, flow_run_id: str
) -> HealthRecord:
    """Start one re-authorization run per breakage; not while an earlier one still waits."""
    logger = get_run_logger()
    if record.reauthorization_flow_run and await _still_active(record.reauthorization_flow_run):
        logger.info(
            "%s: the re-authorization run %s is still waiting.",
            check.block_name,
            record.reauthorization_flow_run,
        )
        return record
    run = await arun_deployment(
        deployment,
        parameters={"instance_block": check.block_name},
        timeout=0,
        # The re-authorization suspends while it waits: it must not be a subflow.
        as_subflow=False,
        # A retry of this check run must not start a second one.
        idempotency_key=f"reauthorize-{check.block_name}-{check.instance_id}-{flow_run_id}",
        tags=["open-connectors", "health-check"],
    )
    logger.warning(
        "%s: started the re-authorization run %s (%s); send its consent link to the account owner.",
        check.block_name,
        run.id,
        run.name,
    )
    return record.model_copy(update={"reauthorization_flow_run": str(run.id)})


async def _still_active(flow_run_id: str) -> bool:
    async with get_client() as client:
        try:
            run = await client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return False
    return run.state is not None and not run.state.is_final()


async def _publish(report: list[InstanceHealth]) -> None:
    rows = [
        {
            "block": item.check.block_name,
            "instance id": item.check.instance_id,
            "instance name": item.check.instance_name,
            "connector": item.check.element_key,
            "status": item.check.status,
            "problem": item.check.problem or "",
            "since": item.since or "",
            "change": item.change or "",
            "what to do": item.check.advice,
            "re-authorization run": item.reauthorization_flow_run or "",
            "detail": item.check.detail,
        }
        for item in report
    ]
    broken = sum(item.check.status == "broken" for item in report)
    await acreate_table_artifact(
        table=rows,
        key=HEALTH_ARTIFACT_KEY,
        description=(
            f"{len(report)} saved connector instance(s) checked: {broken} broken, "
            f"{sum(item.check.status == 'ok' for item in report)} ok."
        ),
    )


def _run_name() -> str:
    return f"verify-instances-{utc_now():%Y-%m-%d-%H%M}"


@flow(name=VERIFY_FLOW, flow_run_name=_run_name, on_running=[watch_supervision])
async def verify_connector_instances(
    instance_blocks: list[InstanceBlockName] = [],  # noqa: B006 - the run form's default
    reauthorize_broken: bool = False,
    reauthorization_deployment: str = REAUTHORIZE_DEPLOYMENT_NAME,
) -> list[InstanceHealth]:
    """Ping every saved connector instance and report each one's status.

    Args:
        instance_blocks: The `ConnectorInstance` blocks to check; empty for all of them.
        reauthorize_broken: Start a re-authorization run for each instance whose
            credentials were revoked (once per breakage; a person still has to consent).
        reauthorization_deployment: The re-authorization deployment, as `flow/deployment`.

    It also lists the authorizations waiting for consent and those whose wait expired
    (the `authorization-waits` artifact) and emits `open-connectors.consent.expired`
    once per expired run (`flows.steps.pending_consents`).

    Returns:
        One line per instance; the same lines make the `connector-instance-health` artifact.
    """
    logger = get_run_logger()
    names = (
        [check_block_name(name, "instance_blocks") for name in instance_blocks]
        if instance_blocks
        else await saved_instance_names()
    )
    context = FlowRunContext.get()
    flow_run_id = str(context.flow_run.id) if context and context.flow_run else ""
    limit = asyncio.Semaphore(MAX_CONCURRENT_CHECKS)

    async def verify_one(name: str) -> InstanceHealth:
        async with limit:
            check = await check_instance(name)
            return await _record_and_announce(
                check,
                reauthorize=reauthorize_broken,
                deployment=reauthorization_deployment,
                flow_run_id=flow_run_id,
            )

    report = list(await asyncio.gather(*(verify_one(name) for name in names)))
    await _publish(report)
    # Authorizations waiting for consent, and expired waits (announced once each).
    await report_pending_consents()
    counts = {
        status: sum(item.check.status == status for item in report)
        for status in ("ok", "broken", "unknown")
    }
    logger.info(
        "Checked %s saved instance(s): %s ok, %s broken, %s unknown.",
        len(report),
        counts["ok"],
        counts["broken"],
        counts["unknown"],
    )
    return report
