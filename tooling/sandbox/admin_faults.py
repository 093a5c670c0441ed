"""Admin routes for fault injection; see faults.py.

- `POST /_sandbox/faults` `{"method", "path", "actions": [...]}` adds a rule; `GET` lists
  the rules; `DELETE` removes them all (and turns latency and quirks off);
  `DELETE /_sandbox/faults/{id}` removes one.
- `GET|PUT /_sandbox/latency` `{"seconds": 0.4}`: added before every non-admin request.
- `GET|PUT /_sandbox/quirks` `{"listing_lag_seconds": 4, "ignore_tags_filter": true,
  "next_page_token_on_last_page": true}`: the platform's harder habits (`PlatformQuirks`);
  a `PUT` changes only the fields it names and answers them all.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tooling.sandbox.errors import PlatformError, invalid_input
from tooling.sandbox.faults import MAX_LATENCY_SECONDS, FaultRuleSpec, PlatformQuirks
from tooling.sandbox.platform_api import read_json_object
from tooling.sandbox.state import get_state

router = APIRouter()


class LatencySetting(BaseModel):
    """The body of `PUT /_sandbox/latency`.

    Attributes:
        seconds: Added before every non-admin request; 0 turns it off.
    """

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=MAX_LATENCY_SECONDS)


@router.post("/faults", status_code=201)
async def add_fault(request: Request) -> dict[str, str]:
    """Add a rule after the existing ones: `{"method", "path", "actions": [...]}`."""
    state = get_state(request)
    try:
        spec = FaultRuleSpec.model_validate(await read_json_object(request))
    except ValidationError as exc:
        raise invalid_input("fault rule", exc) from None
    async with state.lock:
        rule = state.faults.add(spec)
    return {"id": rule.id}


@router.get("/faults")
async def list_faults(request: Request) -> list[dict[str, Any]]:
    """Every rule, oldest first, with its remaining actions and hits (used-up ones too)."""
    state = get_state(request)
    async with state.lock:
        return state.faults.as_json()


@router.delete("/faults")
async def clear_faults(request: Request) -> dict[str, int]:
    """Remove every rule and turn latency off."""
    state = get_state(request)
    async with state.lock:
        return {"cleared": state.faults.clear()}


@router.delete("/faults/{rule_id}")
async def remove_fault(request: Request, rule_id: str) -> dict[str, str]:
    """Remove one rule."""
    state = get_state(request)
    async with state.lock:
        if not state.faults.remove(rule_id):
            raise PlatformError(404, f"No fault rule with id {rule_id[:40]}.")
    return {"id": rule_id}


@router.get("/latency")
async def get_latency(request: Request) -> dict[str, float]:
    """The latency added before every non-admin request."""
    return {"seconds": get_state(request).faults.latency_seconds}


@router.put("/latency")
async def set_latency(request: Request) -> dict[str, float]:
    """Set the latency added before every non-admin request (0 turns it off)."""
    state = get_state(request)
    try:
        setting = LatencySetting.model_validate(await read_json_object(request))
    except ValidationError as exc:
        raise invalid_input("latency", exc) from None
    async with state.lock:
        state.faults.latency_seconds = setting.seconds
    return {"seconds": setting.seconds}


@router.get("/quirks")
async def get_quirks(request: Request) -> dict[str, Any]:
    """The platform quirks in force."""
    return get_state(request).faults.quirks.model_dump()


@router.put("/quirks")
async def set_quirks(request: Request) -> dict[str, Any]:
    """Change some quirks, e.g. `{"listing_lag_seconds": 4}`; answer all of them."""
    state = get_state(request)
    try:
        given = PlatformQuirks.model_validate(await read_json_object(request))
    except ValidationError as exc:
        raise invalid_input("quirks", exc) from None
    async with state.lock:
        current = state.faults.quirks
        state.faults.quirks = current.model_copy(update=given.model_dump(exclude_unset=True))
        return state.faults.quirks.model_dump()
