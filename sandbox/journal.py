"""The request journal: what the sandbox was asked, for tests and the demo."""

from __future__ import annotations

from collections import deque
from typing import Any

# Bounded so a long benchmark cannot grow the sandbox without limit.
MAX_ENTRIES = 100_000


class RequestJournal:
    """The latest requests (method, path without query string, status, time)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        """Keep at most `max_entries`, dropping the oldest first."""
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)

    def record(self, *, method: str, path: str, status: int, at: str) -> None:
        """Add one request; `path` must not carry the query string (it may hold secrets)."""
        self._entries.append({"method": method, "path": path, "status": status, "at": at})

    def entries(self) -> list[dict[str, Any]]:
        """Every kept entry, oldest first."""
        return list(self._entries)

    def clear(self) -> int:
        """Forget every entry; return how many there were."""
        count = len(self._entries)
        self._entries.clear()
        return count
