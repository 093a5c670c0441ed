"""The downstream example: export one resource of a saved instance as JSON Lines.

    load the saved instance ──▶ export_records ──────────────────────▶ table artifact
    (the block named by the     pages through the hub resource with     records, pages,
     event or the person)       elements-next-page-token, writes each   bytes, file
                                page and drops it (memory: one page)

The `export-connector-resource` deployment starts it for every new instance (a
deployment trigger on `open-connectors.instance.created` passes the block name from
the event), and it can be run by hand. Your own flows follow the same pattern:
load the `ConnectorInstance` block, call the hub with its client.
"""

# No `from __future__ import annotations` here: a served run gets its flow pickled by
# value (deployments/serve.py), and the parameters' types must travel with it.
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_HOME
from pydantic import BaseModel

from blocks import ConnectorInstance
from blocks.run_form import InstanceBlockName
from flows.steps.blocks import load_block
from flows.steps.jsonl_sink import ExportTarget, WriteStats, export_target, slug, write_json_lines
from flows.steps.names import EXPORT_FLOW
from flows.steps.parameters import check_block_name
from flows.steps.supervision import watch_supervision
from open_connectors import ConfigurationError, OpenConnectorsClient

DEFAULT_RESOURCE = "contacts"
DEFAULT_PAGE_SIZE = 200
MAX_PAGE_SIZE = 5000
PROGRESS_EVERY_SECONDS = 5.0
_RESOURCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}(/[A-Za-z0-9_.-]{1,100}){0,4}$")


class ExportSummary(BaseModel):
    """What an export wrote. No token inside.

    Attributes:
        instance_id: The instance read.
        block_name: Its `ConnectorInstance` block.
        resource: The hub resource, e.g. `contacts`.
        records: Records written, one JSON object per line.
        pages: Pages read.
        bytes: Size of the file.
        total_reported: The count the platform reported, when it did.
        location: The file written.
    """

    instance_id: int
    block_name: str
    resource: str
    records: int
    pages: int
    bytes: int
    total_reported: int | None
    location: str


def default_destination() -> str:
    """Where exports go unless told otherwise: `<PREFECT_HOME>/exports`."""
    return str(Path(PREFECT_HOME.value()).expanduser() / "exports")


def check_resource(resource: str) -> str:
    """Check a hub resource path such as `contacts` or `contacts/42/emails`.

    Raises:
        ConfigurationError: Not a resource path.
    """
    value = (resource or "").strip().strip("/")
    if not _RESOURCE_PATTERN.match(value) or ".." in value:
        raise ConfigurationError(
            f"resource {resource[:100]!r} is not a hub resource: give a name like 'contacts' "
            "(letters, digits, '_', '-', '.', sub-resources separated by '/')."
        )
    return value


async def record_pages(
    client: OpenConnectorsClient,
    hub: str,
    resource: str,
    *,
    page_size: int,
    where: str | None = None,
) -> AsyncIterator[tuple[list[dict[str, Any]], int | None]]:
    """Each page's records and the platform's total count, following the page cursor."""
    async for page in client.iter_pages(hub, resource, page_size=page_size, where=where):
        yield page.records, page.total_count


@task(name="export_records", persist_result=False)
async def export_records(
    saved: ConnectorInstance,
    resource: str,
    target: ExportTarget,
    page_size: int,
    where: str | None,
) -> WriteStats:
    """Page through the resource and stream it into the file, logging progress."""
    logger = get_run_logger()
    started = last_log = time.monotonic()

    def progress(stats: WriteStats) -> None:
        nonlocal last_log
        now = time.monotonic()
        if stats.pages == 1 or now - last_log >= PROGRESS_EVERY_SECONDS:
            last_log = now
            of_total = f" of {stats.total_reported}" if stats.total_reported is not None else ""
            logger.info(
                "Exported %s%s %s record(s) in %s page(s) so far.",
                stats.records,
                of_total,
                resource,
                stats.pages,
            )

    async with saved.get_client() as client:
        pages = record_pages(client, saved.hub, resource, page_size=page_size, where=where)
        stats = await write_json_lines(pages, target, on_page=progress)
    logger.info(
        "Exported %s %s record(s) in %s page(s), %s bytes, in %.1f s to %s.",
        stats.records,
        resource,
        stats.pages,
        stats.bytes,
        time.monotonic() - started,
        target.display,
    )
    if stats.total_reported is not None and stats.total_reported != stats.records:
        logger.warning(
            "The platform reported %s %s record(s) but %s were read: records were added or "
            "removed during the export.",
            stats.total_reported,
            resource,
            stats.records,
        )
    return stats


@flow(
    name=EXPORT_FLOW,
    flow_run_name="export-{instance_block}-{resource}",
    on_running=[watch_supervision],
    # The summary holds no secret; persisting it lets callers read it back.
    persist_result=True,
    result_serializer="json",
)
async def export_connector_resource(
    instance_block: InstanceBlockName,
    resource: str = DEFAULT_RESOURCE,
    destination: str = "",
    page_size: int = DEFAULT_PAGE_SIZE,
    where: str = "",
) -> ExportSummary:
    """Export every record of one hub resource of a saved instance as JSON Lines.

    Args:
        instance_block: The `ConnectorInstance` block of the instance to read.
        resource: The hub resource, e.g. `contacts`.
        destination: A directory or an fsspec URL (e.g. `s3://bucket/exports` with
            s3fs installed); empty for `<PREFECT_HOME>/exports`. The file is
            `<destination>/<instance_block>/<resource>-<flow run id>.jsonl`.
        page_size: Records per page (1-5000).
        where: An optional CEQL filter, e.g. `lastName='Hopper'`.

    Returns:
        What was written and where.
    """
    block_name = check_block_name(instance_block, "instance_block")
    resource = check_resource(resource)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigurationError(f"page_size must be 1-{MAX_PAGE_SIZE}; got {page_size}.")
    saved = await load_block(ConnectorInstance, block_name, "instance_block")
    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context and context.flow_run else "local"
    # One file per run: a retry of the same run rewrites it instead of adding another.
    target = export_target(
        destination or default_destination(),
        folder=block_name,
        file_stem=f"{slug(resource)}-{run_id}",
    )
    stats = await export_records(saved, resource, target, page_size, where)
    summary = ExportSummary(
        instance_id=saved.instance_id,
        block_name=block_name,
        resource=resource,
        records=stats.records,
        pages=stats.pages,
        bytes=stats.bytes,
        total_reported=stats.total_reported,
        location=target.display,
    )
    await acreate_table_artifact(
        table=[
            {
                "instance": f"{saved.instance_name} ({saved.instance_id})",
                "block": block_name,
                "resource": resource,
                "records": stats.records,
                "reported by the platform": stats.total_reported,
                "pages": stats.pages,
                "bytes": stats.bytes,
                "file": target.display,
            }
        ],
        key=f"export-{block_name}-{slug(resource)}"[:100].rstrip("-"),
        description=f"Export of {resource} from {saved.instance_name}: {stats.records} records.",
    )
    return summary
