"""The request journal: what the sandbox was asked, for tests and the demo."""

from __future__ import annotations

from collections import deque
from typing import Any

# Bounded so a long benchmark cannot grow the sandbox without limit.
MAX_ENTRIES = 100_000


class RequestJournal:
    """The latest requests (method, path without query string, status, time, fault)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        """Keep at most `max_entries`, dropping the oldest first."""
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)

    def record(
        self, *, method: str, path: str, status: int, at: str, fault: str | None = None
    ) -> None:
        """Add one request; `path` must not carry the query string (it may hold secrets).

        Args:
            method: The request method.
            path: The request path, without query string.
            status: The status the client saw; 0 when the connection closed without one.
            at: When, as an ISO 8601 UTC timestamp.
            fault: The type of the fault action the request took; None (and then absent
                from the entry) when it took none.
        """
        entry: dict[str, Any] = {"method": method, "path": path, "status": status, "at": at}
        if fault is not None:
            entry["fault"] = fault
        self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        """Every kept entry, oldest first."""
        return list(self._entries)

    def clear(self) -> int:
        """Forget every entry; return how many there were."""
        count = len(self._entries)
        self._entries.clear()
        return count
