"""Admin routes for tests and the demo (`/_sandbox`, no auth): health, instances, journal, codes.

The fault-injection routes are in `admin_faults.py`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tooling.sandbox.errors import PlatformError, invalid_input
from tooling.sandbox.platform_api import read_json_object
from tooling.sandbox.state import SandboxState, get_state
from tooling.sandbox.views import admin_instance_json

router = APIRouter()


class SettingsUpdate(BaseModel):
    """The body of `PUT /_sandbox/settings`; absent fields stay as they are.

    Attributes:
        code_ttl_seconds: The lifetime of authorization codes issued from then on.
    """

    model_config = ConfigDict(extra="forbid")

    code_ttl_seconds: float | None = Field(default=None, gt=0)


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@router.get("/instances")
async def all_instances(request: Request) -> list[dict[str, Any]]:
    """Every instance ever created, deleted ones included, with tokens."""
    return [admin_instance_json(instance) for instance in get_state(request).store.everything()]


@router.post("/instances/{instance_id}/revoke")
async def revoke(request: Request, instance_id: int) -> dict[str, Any]:
    """Mark an instance `valid: false`, as after a failed provider refresh."""
    state = get_state(request)
    async with state.lock:
        instance = state.store.get(instance_id)
        if instance is None:
            raise PlatformError(404, f"No instance found with id {instance_id}.")
        instance.valid = False
        instance.updated_at = state.clock()
        return admin_instance_json(instance)


@router.get("/requests")
async def journal(request: Request) -> list[dict[str, Any]]:
    """The request journal (every request but `/_sandbox/*`; paths without query strings)."""
    return get_state(request).journal.entries()


@router.delete("/requests")
async def clear_journal(request: Request) -> dict[str, int]:
    """Empty the request journal."""
    return {"cleared": get_state(request).journal.clear()}


@router.get("/codes")
async def issued_codes(request: Request) -> list[dict[str, str]]:
    """Every authorization code issued so far (the newest 100,000), for leak audits."""
    return [{"code": code} for code in get_state(request).oauth.issued_codes]


@router.post("/codes/expire")
async def expire_codes(request: Request) -> dict[str, int]:
    """Make every issued, unused authorization code expire now (a human who was slow)."""
    state = get_state(request)
    async with state.lock:
        return {"expired": state.oauth.expire_unused_codes()}


def _settings(state: SandboxState) -> dict[str, Any]:
    return {"code_ttl_seconds": state.oauth.code_ttl_seconds}


@router.get("/settings")
async def get_settings(request: Request) -> dict[str, Any]:
    """The run-time settings."""
    return _settings(get_state(request))


@router.put("/settings")
async def update_settings(request: Request) -> dict[str, Any]:
    """Change run-time settings, e.g. `{"code_ttl_seconds": 5}`; answer the result."""
    state = get_state(request)
    try:
        update = SettingsUpdate.model_validate(await read_json_object(request))
    except ValidationError as exc:
        raise invalid_input("settings", exc) from None
    async with state.lock:
        if update.code_ttl_seconds is not None:
            state.oauth.code_ttl_seconds = update.code_ttl_seconds
        return _settings(state)
