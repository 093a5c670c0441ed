"""Which connector a run authorizes: the platform's own definition of it, read once per run.

`GET /elements/{key}` describes the connector (its configuration fields, its kind of
authentication); hand-written profiles add normalizers and help. The definition is
read before the consent step and kept as the run's persisted result (plain JSON, no
secret), so the re-run after a resume reads it back instead of asking again.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from blocks import OpenConnectorsCredentials
from open_connectors import ConnectorSpec, resolve_connector


def _per_run(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return f"open-connectors-connector-{context.task_run.flow_run_id}-{parameters['element_key']}"


@task(
    name="read_connector_definition",
    cache_key_fn=_per_run,
    persist_result=True,
    result_serializer="json",
)
async def read_connector_definition(
    element_key: str, credentials: OpenConnectorsCredentials
) -> ConnectorSpec:
    """The connector's definition from the platform, merged with its profile.

    Raises:
        ConnectorNotFoundError: The platform does not know the key (its words quoted).
        NotOAuth2ConnectorError: The connector does not authenticate with OAuth 2.0.
    """
    async with credentials.get_client() as client:
        return await resolve_connector(client, element_key)
