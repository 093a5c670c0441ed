"""How instances look on the wire: the platform's instance JSON, secrets masked."""

from __future__ import annotations

from typing import Any

from tooling.sandbox.clock import iso_utc
from tooling.sandbox.store import Instance

MASK = "********"
_MASKED_KEYS = frozenset({"oauth.api.key", "oauth.api.secret", "infusionsoft.private.key"})
_MASKED_WORDS = ("secret", "password", "token")


def is_masked_key(key: str) -> bool:
    """Whether the platform masks this configuration key when it echoes it."""
    lowered = key.lower()
    return lowered in _MASKED_KEYS or any(word in lowered for word in _MASKED_WORDS)


def mask_configuration(configuration: dict[str, Any]) -> dict[str, Any]:
    """Echo a configuration with its secrets replaced by `********` (nulls stay null)."""
    return {
        key: MASK if value is not None and is_masked_key(key) else value
        for key, value in configuration.items()
    }


def instance_json(instance: Instance, *, tags: list[str] | None = None) -> dict[str, Any]:
    """The instance as the platform answers it, token included, secrets masked.

    Args:
        instance: The instance.
        tags: The tags to show instead of its current ones (a lagging read).
    """
    return {
        "id": instance.id,
        "name": instance.name,
        "createdDate": iso_utc(instance.created_at),
        "updatedDate": iso_utc(instance.updated_at),
        "token": instance.token,
        "element": instance.element.reference(),
        "elementId": instance.element.id,
        "tags": list(instance.tags) if tags is None else tags,
        "provisionInteractions": [],
        "valid": instance.valid,
        "disabled": instance.disabled,
        "maxCacheSize": 0,
        "cacheTimeToLive": 0,
        "configuration": mask_configuration(instance.configuration),
        "eventsEnabled": False,
        "traceLoggingEnabled": False,
        "cachingEnabled": False,
        "externalAuthentication": "none",
        "user": {"id": 1},
    }


def admin_instance_json(instance: Instance) -> dict[str, Any]:
    """The admin view: the platform's JSON plus whether the instance was deleted."""
    return {**instance_json(instance), "deleted": instance.deleted}
