"""Hand an authorized instance over: save its token in its block, then check it answers."""

from __future__ import annotations

from prefect import get_run_logger
from pydantic import SecretStr

from blocks import ConnectorInstance, OpenConnectorsCredentials
from open_connectors import Instance, OpenConnectorsError, PlatformUnavailableError


class InstanceCheckFailedError(OpenConnectorsError):
    """The instance was saved, but does not answer a ping."""


async def save_and_check(
    instance: Instance,
    *,
    token: SecretStr,
    element_key: str,
    credentials: OpenConnectorsCredentials,
    block_name: str,
    flow_run_id: str,
    what_happened: str,
    advice: str,
) -> ConnectorInstance:
    """Save the instance's token in its block first, then ping through it.

    The save comes first so that an instance is never left without its token in
    Prefect, whatever fails afterwards.

    Args:
        instance: The instance as the platform returned it.
        token: Its token.
        element_key: The connector key.
        credentials: The account the instance belongs to.
        block_name: The `ConnectorInstance` block to save (overwritten).
        flow_run_id: The run that authorized it.
        what_happened: For the message, e.g. "created" or "re-authorized".
        advice: What to do when it does not answer.

    Raises:
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
    await saved.asave(block_name, overwrite=True)
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
    return saved
