"""The admin path prefix, shared by the middleware and the fault rules."""

from __future__ import annotations

ADMIN_PREFIX = "/_sandbox"


def is_admin_path(path: str) -> bool:
    """Whether `path` belongs to the admin API (kept out of the journal and the faults)."""
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")
