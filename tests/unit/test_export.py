"""The export's paging and JSON Lines writing: complete, atomic, and in constant memory."""

from __future__ import annotations

import base64
import gc
import json
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest

from flows.export import check_resource, record_pages
from flows.steps.jsonl_sink import PARTIAL_SUFFIX, export_target, slug, write_json_lines
from open_connectors import ConfigurationError, OpenConnectorsClient

BASE = "https://api.example.test/elements/api-v2"


def hub_transport(total: int, *, record_size: int = 200) -> httpx.MockTransport:
    """A hub with `total` records, served page by page with the platform's paging headers.

    Records are made on demand, so the test's own memory does not grow with `total`.
    """

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"].endswith("Element element-token")
        page_size = int(request.url.params["pageSize"])
        cursor = request.url.params.get("nextPage")
        offset = int(base64.b64decode(cursor)) if cursor else 0
        count = max(0, min(page_size, total - offset))
        records = [
            {"id": offset + i + 1, "name": f"Contact {offset + i + 1}", "notes": "x" * record_size}
            for i in range(count)
        ]
        headers = {"elements-returned-count": str(count), "elements-total-count": str(total)}
        if offset + count < total:
            headers["elements-next-page-token"] = base64.b64encode(
                str(offset + count).encode()
            ).decode()
        return httpx.Response(200, json=records, headers=headers)

    return httpx.MockTransport(handler)


def hub_client(total: int) -> OpenConnectorsClient:
    return OpenConnectorsClient(
        BASE, "user", "org", element_token="element-token", transport=hub_transport(total)
    )


async def export(total: int, destination: str, page_size: int = 200) -> tuple[Any, str]:
    target = export_target(destination, folder="acme-erp", file_stem="contacts-run")
    async with hub_client(total) as client:
        pages = record_pages(client, "erp", "contacts", page_size=page_size)
        stats = await write_json_lines(pages, target)
    return stats, target.path


async def test_every_record_is_written_once_as_one_json_line(tmp_path: Path) -> None:
    stats, path = await export(1000, str(tmp_path), page_size=300)
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(1, 1001))
    assert (stats.records, stats.pages, stats.total_reported) == (1000, 4, 1000)
    assert stats.bytes == Path(path).stat().st_size
    assert path == f"{tmp_path}/acme-erp/contacts-run.jsonl"
    assert not Path(path + PARTIAL_SUFFIX).exists()


async def test_an_empty_resource_makes_an_empty_file(tmp_path: Path) -> None:
    stats, path = await export(0, str(tmp_path))
    assert Path(path).read_bytes() == b"" and stats.records == 0 and stats.pages == 1


async def test_a_failed_export_leaves_no_file_behind(tmp_path: Path) -> None:
    target = export_target(str(tmp_path), folder="acme-erp", file_stem="contacts-run")

    async def failing() -> AsyncIterator[tuple[list[dict[str, Any]], int | None]]:
        yield [{"id": 1}], 3
        raise RuntimeError("the platform went away")

    with pytest.raises(RuntimeError, match="went away"):
        await write_json_lines(failing(), target)
    assert list((tmp_path / "acme-erp").iterdir()) == []


async def test_any_fsspec_location_works(tmp_path: Path) -> None:
    stats, path = await export(450, "memory://exports-test/prefix")
    fs = fsspec.filesystem("memory")
    assert fs.cat(path).count(b"\n") == 450 == stats.records
    target = export_target("memory://exports-test/prefix", folder="b", file_stem="f")
    assert target.display == "memory:///exports-test/prefix/b/f.jsonl"


async def test_memory_does_not_grow_with_the_number_of_records(tmp_path: Path) -> None:
    await export(1000, str(tmp_path / "warm-up"))  # first-use allocations of the libraries

    async def peak(total: int) -> tuple[int, int]:
        gc.collect()
        tracemalloc.start()
        try:
            stats, _ = await export(total, str(tmp_path / str(total)), page_size=500)
            assert stats.records == total
            return tracemalloc.get_traced_memory()[1], stats.bytes
        finally:
            tracemalloc.stop()

    small, _ = await peak(8_000)
    large, written = await peak(40_000)
    # Five times the records, about 10 MB of JSON, yet one page in memory at a time.
    assert large < small * 1.6, (small, large)
    assert large < written / 3, (large, written)


@pytest.mark.parametrize("resource", ["contacts", "contacts/42/emails", "orders_v2", "a.b"])
def test_resources_are_accepted(resource: str) -> None:
    assert check_resource(f" {resource}/ ") == resource


@pytest.mark.parametrize(
    "resource", ["", "../instances", "contacts?x=1", "contacts/../../x", "/", "a b", "ping#"]
)
def test_malformed_resources_are_refused(resource: str) -> None:
    with pytest.raises(ConfigurationError, match="not a hub resource"):
        check_resource(resource)


def test_slugs_name_files_and_artifacts() -> None:
    assert slug("Contacts/42/Emails") == "contacts-42-emails"
    assert slug("///") == "records"
