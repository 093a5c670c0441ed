"""Admin routes for tests and the demo (`/_sandbox`, no auth): health, instances, journal."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sandbox.errors import PlatformError
from sandbox.state import get_state
from sandbox.views import admin_instance_json

router = APIRouter()

# Fault injection will add its routes here (e.g. `PUT /_sandbox/faults`): see faults.py.


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
