"""The block that hands a created connector instance over to downstream flows."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.credentials import DOCUMENTATION_URL, OpenConnectorsCredentials
from blocks.schema_cache import CachedSchema
from open_connectors import OpenConnectorsClient
from open_connectors.connectors import hub_for


class ConnectorInstance(CachedSchema, Block):
    """An authorized Open Connectors connector instance: its id, its token and its account.

    Its client sends `Authorization: User …, Organization …, Element …`, so
    downstream flows call the connector's hub with it directly.

    Example:
        ```python
        from blocks import ConnectorInstance

        instance = ConnectorInstance.load("BLOCK_NAME")
        async with instance.get_client() as client:
            async for contact in client.iter_records(instance.hub, "contacts"):
                ...
        ```
    """

    _block_type_name = "Open Connectors Instance"
    _block_type_slug = "open-connectors-instance"
    _documentation_url = DOCUMENTATION_URL

    instance_id: int = Field(title="Instance id", description="The instance's numeric id.")
    instance_name: str = Field(title="Instance name", description="The instance's name.")
    element_key: str = Field(
        title="Connector key", description="The connector (element) key, e.g. infusionsofterp."
    )
    token: SecretStr = Field(
        title="Instance token", description="The instance token (the Element part of the header)."
    )
    credentials: OpenConnectorsCredentials = Field(
        title="Credentials", description="The Open Connectors account the instance belongs to."
    )
    authorized_by_flow_run: str | None = Field(
        default=None,
        title="Authorized by flow run",
        description="The id of the Prefect flow run that last authorized the instance.",
    )

    @property
    def hub(self) -> str:
        """The connector's hub, for hub paths like `/hubs/{hub}/contacts`."""
        return hub_for(self.element_key)

    def get_client(self) -> OpenConnectorsClient:
        """A new client for hub calls on this instance; use it as `async with`."""
        return self.credentials.get_client(element_token=self.token)
