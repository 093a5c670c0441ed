"""End a connector instance's life: delete it on the platform, then its block and health record.

    load the block ──▶ DELETE /instances/{id} ──▶ event ──▶ health record, block
    (ConnectorInstance) (the block's account;    open-connectors.  (the Variable, then
                         404: already gone)       instance.deleted  the block, last)

Run by hand (the `disconnect-connector-instance` deployment) or from another flow
(`await disconnect_connector_instance("acme-erp")`). Idempotent: an instance already
deleted on the platform completes, saying so, and the block and record are still
cleaned up. Nothing is deleted locally unless the platform confirmed the instance is
gone: an unreachable platform, rejected secrets or any other refusal end the run with
the cause, block and record kept. The block goes last, so a run stopped half-way can
simply be run again.
"""

# No `from __future__ import annotations` here: a served run gets its flow pickled by
# value (deployments/serve.py), and the parameters' types must travel with it.
from prefect import flow, get_run_logger, task
from prefect.variables import Variable
from pydantic import BaseModel

from blocks import ConnectorInstance
from flows.steps.blocks import load_block
from flows.steps.events import INSTANCE_DELETED, emit_instance_event
from flows.steps.health import variable_name
from flows.steps.names import DISCONNECT_FLOW
from flows.steps.parameters import check_block_name
from flows.steps.supervision import watch_supervision
from open_connectors import (
    ConnectorNotFoundError,
    DisconnectRefusedError,
    InstanceNotFoundError,
    OpenConnectorsClient,
    OpenConnectorsError,
)


class DisconnectedInstance(BaseModel):
    """What a disconnect did. Never the token.

    Attributes:
        block_name: The `ConnectorInstance` block that was deleted.
        instance_id: The Open Connectors instance id.
        instance_name: The instance name.
        element_key: The connector key.
        already_deleted: True when the platform no longer had the instance.
        health_record_deleted: True when a health record existed and was deleted.
    """

    block_name: str
    instance_id: int
    instance_name: str
    element_key: str
    already_deleted: bool
    health_record_deleted: bool


async def delete_on_platform(client: OpenConnectorsClient, saved: ConnectorInstance) -> bool:
    """Delete the instance on the platform; return False when it was already gone.

    A 404 is trusted only once the platform has shown it answers these credentials
    (it reads the connector's definition): a wrong base URL answering 404 to everything
    must not look like an instance already deleted.

    Raises:
        DisconnectRefusedError: Unreachable, secrets rejected, or any other refusal.
    """
    instance_id = saved.instance_id
    try:
        await client.delete_instance(instance_id)
        return True
    except InstanceNotFoundError:
        pass
    except OpenConnectorsError as exc:
        raise _refused(saved, exc) from None
    try:
        await client.get_connector_definition(saved.element_key)
    except ConnectorNotFoundError as exc:
        raise _refused(
            saved,
            exc,
            cause=(
                "the platform answered 404 for the instance and for its connector "
                f"'{saved.element_key}'; check the credentials block's base_url"
            ),
        ) from None
    except OpenConnectorsError as exc:
        raise _refused(saved, exc) from None
    return False


def _refused(
    saved: ConnectorInstance, exc: OpenConnectorsError, *, cause: str | None = None
) -> DisconnectRefusedError:
    reason = (cause or str(exc)).rstrip(". ")
    return DisconnectRefusedError(
        f"Instance {saved.instance_id} ({saved.element_key}, '{saved.instance_name}') was not "
        f"deleted, and its block and health record are kept: {reason}. Fix the credentials "
        "block (or wait for the platform), then run the disconnect again."
    )


@task(name="delete_platform_instance", persist_result=False)
async def delete_platform_instance(block_name: str) -> tuple[ConnectorInstance, bool]:
    """Load the block and delete its instance on the platform with the block's credentials.

    Returns:
        The loaded block, and whether the platform deleted the instance now (False: it
        was already gone).

    Raises:
        ConfigurationError: No such block, or it cannot be read.
        DisconnectRefusedError: The platform did not confirm the deletion.
    """
    logger = get_run_logger()
    saved = await load_block(ConnectorInstance, block_name, "instance_block")
    async with saved.credentials.get_client() as client:
        deleted = await delete_on_platform(client, saved)
    if deleted:
        logger.info("Deleted instance %s on Open Connectors.", saved.instance_id)
    else:
        logger.warning(
            "Instance %s was already gone on Open Connectors; cleaning up what is left.",
            saved.instance_id,
        )
    return saved, deleted


@task(name="forget_saved_instance", persist_result=False)
async def forget_saved_instance(block_name: str) -> bool:
    """Delete the block's health record, then the block itself.

    Returns:
        Whether a health record existed.
    """
    logger = get_run_logger()
    had_record = await Variable.aunset(variable_name(block_name))
    if had_record:
        logger.info("Deleted the health record %r.", variable_name(block_name))
    await ConnectorInstance.adelete(block_name)
    logger.info("Deleted the block %r.", block_name)
    return had_record


@flow(
    name=DISCONNECT_FLOW,
    flow_run_name="disconnect-{instance_block}",
    on_running=[watch_supervision],
    # The summary holds no secret; persisting it lets callers read it back.
    persist_result=True,
    result_serializer="json",
)
async def disconnect_connector_instance(instance_block: str) -> DisconnectedInstance:
    """Delete a saved connector instance on Open Connectors, then its block and health record.

    Args:
        instance_block: The `ConnectorInstance` block of the instance.

    Returns:
        What was deleted; the token is never part of it.

    Raises:
        ConfigurationError: No such block.
        DisconnectRefusedError: The platform could not be reached or refused; nothing
            was deleted.
    """
    name = check_block_name(instance_block, "instance_block")
    saved, deleted = await delete_platform_instance(name)
    # Announced before the clean-up: a run stopped in between repeats the event on its
    # re-run (the instance is then already gone) rather than losing it.
    emit_instance_event(
        INSTANCE_DELETED,
        instance_id=saved.instance_id,
        instance_name=saved.instance_name,
        element_key=saved.element_key,
        block_name=name,
        payload={"already_deleted": not deleted},
    )
    had_record = await forget_saved_instance(name)
    summary = DisconnectedInstance(
        block_name=name,
        instance_id=saved.instance_id,
        instance_name=saved.instance_name,
        element_key=saved.element_key,
        already_deleted=not deleted,
        health_record_deleted=had_record,
    )
    get_run_logger().info(
        "Instance %s (%s) is disconnected%s; block %r and its health record are gone.",
        summary.instance_id,
        summary.instance_name,
        " (it was already deleted on the platform)" if summary.already_deleted else "",
        name,
    )
    return summary
