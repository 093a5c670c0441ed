"""Hub calls: `GET /hubs/{hub}/{resource}`, answered for the instance the token names."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tooling.sandbox.auth import require_hub_auth
from tooling.sandbox.clock import iso_utc
from tooling.sandbox.errors import PlatformError
from tooling.sandbox.hub_data import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_cursor,
    encode_cursor,
    make_record,
    records,
)
from tooling.sandbox.state import get_state

router = APIRouter()


def _positive_int(request: Request, name: str, default: int, headers: dict[str, str]) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise PlatformError(
            400, f"The '{name}' parameter must be a positive integer.", headers=headers
        )
    return value


@router.get("/hubs/{hub}/{resource:path}")
async def hub_get(request: Request, hub: str, resource: str) -> JSONResponse:
    """Answer a hub read; the hub segment is ignored, the token picks the instance.

    `ping` answers the time and element; `<resource>/<digits>` one record; anything
    else a page of records (`pageSize`, `nextPage` cursor, or 1-based `page`).
    """
    state = get_state(request)
    instance = require_hub_auth(request, state)
    headers = {"elements-element-instance-id": str(instance.id)}
    resource = resource.strip("/")
    if not resource:
        raise PlatformError(404, "Not found.", headers=headers)
    if resource == "ping":
        body = {"dateTime": iso_utc(state.clock()), "endpoint": instance.element.key}
        return JSONResponse(body, headers=headers)

    total = state.config.records_per_resource
    parent, _, last = resource.rpartition("/")
    if parent and last.isdigit():
        index = int(last) - 1
        if not 0 <= index < total:
            raise PlatformError(404, f"No {parent} record with id {last}.", headers=headers)
        return JSONResponse(make_record(parent, index), headers=headers)

    page_size = min(_positive_int(request, "pageSize", DEFAULT_PAGE_SIZE, headers), MAX_PAGE_SIZE)
    cursor = request.query_params.get("nextPage")
    if cursor:
        try:
            offset = decode_cursor(cursor, resource)
        except ValueError:
            raise PlatformError(400, "Invalid nextPage token.", headers=headers) from None
    else:
        offset = (_positive_int(request, "page", 1, headers) - 1) * page_size
    count = max(0, min(page_size, total - offset))
    page: list[dict[str, Any]] = records(resource, offset, count)
    headers["elements-returned-count"] = str(count)
    headers["elements-total-count"] = str(total)
    # The real platform also sends a token on the last page (then an empty page).
    if offset + count < total or state.faults.quirks.next_page_token_on_last_page:
        headers["elements-next-page-token"] = encode_cursor(resource, offset + count)
    return JSONResponse(page, headers=headers)
