"""Hand an authorized instance over: save its token in its block, check it answers, announce it.

One step for a new authorization and a re-authorization alike. The save comes
first, so that an instance is never left without its token in Prefect, whatever
fails afterwards; the summary and the event never carry the token.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from prefect import get_run_logger
from pydantic import BaseModel, SecretStr

from blocks import ConnectorInstance, OpenConnectorsCredentials
from flows.steps.blocks import save_instance_block
from flows.steps.events import emit_instance_event
from open_connectors import (
    Instance,
    InstanceCheckFailedError,
    InstanceTokenNotSavedError,
    OpenConnectorsError,
    PlatformUnavailableError,
)


class InstanceSummary(BaseModel):
    """Where to find an authorized instance. Never the token.

    Attributes:
        instance_id: The Open Connectors instance id.
        instance_name: The instance name.
        element_key: The connector key.
        block_name: The name of the `ConnectorInstance` block holding the token.
    """

    instance_id: int
    instance_name: str
    element_key: str
    block_name: str


S = TypeVar("S", bound=InstanceSummary)


async def hand_over(
    instance: Instance,
    *,
    summary: type[S],
    token: SecretStr,
    element_key: str,
    credentials: OpenConnectorsCredentials,
    block_name: str,
    flow_run_id: str,
    event: str,
    what_happened: str,
    advice: str,
    **details: Any,
) -> S:
    """Save the instance's token in its block, ping through it, emit `event`, return the summary.

    Args:
        instance: The instance as the platform returned it.
        summary: The summary model to return (its extra fields come from `details`).
        token: The instance token.
        element_key: The connector key.
        credentials: The account the instance belongs to.
        block_name: The `ConnectorInstance` block to save (see `save_instance_block`).
        flow_run_id: The run that authorized it.
        event: The event announcing the hand-over, e.g. `open-connectors.instance.created`.
        what_happened: For messages, e.g. "created" or "re-authorized".
        advice: What to do when the instance does not answer.
        details: Extra summary fields (e.g. `created=True`), also put in the event's payload.

    Raises:
        InstanceTokenNotSavedError: Prefect's API failed while the token was being saved.
        InstanceBlockTakenError: Another authorization took the block name meanwhile.
        InstanceCheckFailedError: Saved, but the instance does not answer its ping.
        PlatformUnavailableError: The platform could not be reached for the ping.
    """
    logger = get_run_logger()
    saved = ConnectorInstance(
        instance_id=instance.id,
        instance_name=instance.name,
        element_key=element_key,
        token=token,
        credentials=credentials,
        authorized_by_flow_run=flow_run_id,
    )
    try:
        await save_instance_block(saved, block_name)
    except (httpx.HTTPError, OSError) as exc:
        # Prefect's API itself failed (after its client's retries): the step is retried,
        # and its look-up by the run's tag finds this instance again without the code.
        raise InstanceTokenNotSavedError(
            f"Instance {instance.id} was {what_happened}, but Prefect could not store its "
            f"token in the block '{block_name}' ({_prefect_failure(exc)}). Retry this run "
            f"once Prefect answers: it finds instance {instance.id} again, without sending "
            "the code, and saves the token."
        ) from None
    logger.info("Saved the instance's token in the block %r.", block_name)
    try:
        async with saved.get_client() as client:
            await client.ping(saved.hub)
    except PlatformUnavailableError:
        raise
    except OpenConnectorsError as exc:
        raise InstanceCheckFailedError(
            f"Instance {instance.id} was {what_happened} and saved in the block '{block_name}', "
            f"but it does not answer: {exc} {advice}"
        ) from None
    logger.info("Instance %s answers its ping.", instance.id)
    result = summary(
        instance_id=instance.id,
        instance_name=instance.name,
        element_key=element_key,
        block_name=block_name,
        **details,
    )
    emit_instance_event(
        event,
        instance_id=result.instance_id,
        instance_name=result.instance_name,
        element_key=result.element_key,
        block_name=result.block_name,
        payload={**details, "flow_run_id": flow_run_id},
    )
    return result


def _prefect_failure(exc: Exception) -> str:
    """What went wrong with Prefect's API, in words without any URL or value."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"the Prefect API answered {exc.response.status_code}"
    return f"the Prefect API could not be reached: {type(exc).__name__}"
