"""Write records as JSON Lines to a directory or any fsspec URL, one page at a time.

Memory holds one page: each page is serialized, written and dropped before the next
one is read. The file is written under a `.partial` name and moved to its final name
only when complete, so a reader never sees half an export. The location may be a
local path or a URL of any filesystem fsspec knows (`s3://bucket/prefix` with
`s3fs` installed, `gs://…`, `az://…`), which is what runs on several machines need.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class ExportTarget:
    """Where one export goes.

    Attributes:
        fs: The filesystem.
        path: The final file's path on `fs`.
        display: The location for logs and artifacts (no credentials in it).
    """

    fs: fsspec.AbstractFileSystem
    path: str
    display: str


@dataclass(frozen=True)
class WriteStats:
    """What was written.

    Attributes:
        records: Records written (lines).
        pages: Pages read.
        bytes: Bytes written.
        total_reported: The platform's `elements-total-count`, when it sent one.
    """

    records: int
    pages: int
    bytes: int
    total_reported: int | None


def slug(value: str) -> str:
    """Lowercase letters, digits and dashes: `contacts/42/emails` → `contacts-42-emails`."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "records"


def export_target(destination: str, *, folder: str, file_stem: str) -> ExportTarget:
    """The file `<destination>/<folder>/<file_stem>.jsonl`.

    Args:
        destination: A local directory or an fsspec URL.
        folder: A subfolder (the saved-instance block name).
        file_stem: The file name without extension.
    """
    fs, root = url_to_fs(destination)
    path = f"{root.rstrip('/')}/{folder}/{file_stem}.jsonl"
    # A local file is shown as a plain path; anything else as a URL without credentials.
    local = isinstance(fs, LocalFileSystem)
    display = path if local else _without_credentials(fs.unstrip_protocol(path))
    return ExportTarget(fs=fs, path=path, display=display)


async def write_json_lines(
    pages: AsyncIterator[tuple[list[dict[str, Any]], int | None]],
    target: ExportTarget,
    *,
    on_page: Callable[[WriteStats], None] | None = None,
) -> WriteStats:
    """Stream pages of records into the target file, then publish it under its final name.

    Args:
        pages: Pages as `(records, total count reported by the platform)`.
        target: Where to write.
        on_page: Called after each page with the running totals (for progress logs).

    Returns:
        The totals.
    """
    partial = target.path + PARTIAL_SUFFIX
    folder = target.path.rsplit("/", 1)[0]
    await anyio.to_thread.run_sync(lambda: target.fs.makedirs(folder, exist_ok=True))
    records = pages_read = size = 0
    total: int | None = None
    handle = await anyio.to_thread.run_sync(lambda: target.fs.open(partial, "wb"))
    local = isinstance(target.fs, LocalFileSystem)
    try:
        async for page, reported in pages:
            data = b"".join(_line(record) for record in page)
            if local:
                # A local write lands in the page cache at once: a thread hop per page
                # would cost more than the write. Still let the event loop run between
                # pages (logs, heartbeats, callbacks of the finished requests).
                handle.write(data)
                await anyio.lowlevel.checkpoint()
            else:
                # A remote filesystem may block on upload: keep the event loop free.
                await anyio.to_thread.run_sync(handle.write, data)
            records += len(page)
            pages_read += 1
            size += len(data)
            total = reported if reported is not None else total
            if on_page is not None:
                on_page(WriteStats(records, pages_read, size, total))
    except BaseException:
        # Leave nothing half-written behind; the original error is the one to report.
        with contextlib.suppress(Exception):
            await anyio.to_thread.run_sync(handle.close)
            await anyio.to_thread.run_sync(lambda: target.fs.rm(partial))
        raise
    await anyio.to_thread.run_sync(handle.close)
    await anyio.to_thread.run_sync(lambda: target.fs.mv(partial, target.path))
    return WriteStats(records, pages_read, size, total)


# One encoder for every line: `json.dumps` with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _line(record: dict[str, Any]) -> bytes:
    return _ENCODER.encode(record).encode() + b"\n"


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
