"""The names of every saved connector instance (`ConnectorInstance` blocks) on the server."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from blocks import ConnectorInstance

PAGE_SIZE = 200


async def saved_instance_names() -> list[str]:
    """The names of all `ConnectorInstance` blocks, sorted; secrets are not fetched."""
    slug = ConnectorInstance.get_block_type_slug()
    names: set[str] = set()
    offset = 0
    async with get_client() as client:
        while True:
            try:
                documents = await client.read_block_documents_by_type(
                    slug, offset=offset, limit=PAGE_SIZE, include_secrets=False
                )
            except ObjectNotFound:
                return []  # the block type was never registered: nothing saved yet
            # Anonymous documents are nested copies, not instances saved by name.
            names.update(doc.name for doc in documents if doc.name and not doc.is_anonymous)
            if len(documents) < PAGE_SIZE:
                return sorted(names)
            offset += PAGE_SIZE
