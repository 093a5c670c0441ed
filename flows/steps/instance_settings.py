"""The non-secret settings an instance was authorized with, for re-authorizing it.

`PUT /instances/{id}` takes the full create body, so a re-authorization sends the
instance's configuration again (for Infusionsoft: `infusionsoft.server`). The
platform's client does not hand configuration back, and the saved-instance block
does not keep it, but the run that created the instance does: its parameters hold
the configuration and the names of the Secret blocks (never a secret), and the
instance carries that run's id as its tag `prefect-flow-run-<id>`.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict

from blocks.run_form import block_name
from open_connectors import creating_run_id


class InstanceSettings(BaseModel):
    """Configuration to send again when re-authorizing, and where it came from.

    Attributes:
        configuration: Non-secret configuration, e.g. `{"infusionsoft.server": ...}`.
        secret_configuration: Secret configuration by Secret block name.
        source: Where the values come from, for the log.
    """

    model_config = ConfigDict(frozen=True)

    configuration: dict[str, str]
    secret_configuration: dict[str, str]
    source: str


async def settings_of_creating_run(tags: list[str]) -> InstanceSettings | None:
    """The settings of the run that created the instance; None when it cannot be found.

    Args:
        tags: The instance's tags, as the platform returns them.
    """
    run_id = creating_run_id(tags)
    if run_id is None:
        return None
    async with get_client() as client:
        try:
            run = await client.read_flow_run(run_id)
        except ObjectNotFound:
            return None
    parameters = run.parameters or {}
    return InstanceSettings(
        configuration=_string_map(parameters.get("configuration")),
        secret_configuration=await _secret_block_names(parameters.get("secret_configuration")),
        source=f"the authorization run {run_id} that created the instance",
    )


async def _secret_block_names(value: Any) -> dict[str, str]:
    """`{key: Secret block name}` from stored parameters, where the run form may have kept
    a picked block as an unresolved `{"$ref": ...}`."""
    if not isinstance(value, dict):
        return {}
    names: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, dict) and "$ref" in item:
            names[str(key)] = block_name(await Block.aload_from_ref(item["$ref"]), Secret, key)
        elif item is not None:
            names[str(key)] = str(item)
    return names


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(key): str(item) for key, item in value.items() if item is not None}
