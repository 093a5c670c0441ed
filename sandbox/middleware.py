"""Per-request bookkeeping: the access log line, the journal, and the fault hook."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.clock import iso_utc
from sandbox.state import SandboxState

access_logger = logging.getLogger("sandbox.access")

ADMIN_PREFIX = "/_sandbox"


def is_admin_path(path: str) -> bool:
    """Whether `path` belongs to the admin API (kept out of the journal and the faults)."""
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


class RequestJournalMiddleware:
    """Logs one line per request and journals it; never the query string or the body.

    uvicorn's own access log is off: it prints query strings, and the GET form of
    `oauth/url` carries `apiSecret` there, like the landing page carries the code.
    """

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        """Wrap `app`, journaling into `state`."""
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, recording its outcome."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            target = self.app
            if not is_admin_path(path):
                # Fault injection hook: see sandbox/faults.py.
                target = await self.state.faults.intercept(scope) or self.app
            await target(scope, receive, send_recording_status)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            access_logger.info("%s %s %d %.1fms", method, path, status, elapsed_ms)
            if not is_admin_path(path):
                self.state.journal.record(
                    method=method,
                    path=path,
                    status=status,
                    at=iso_utc(self.state.clock(), milliseconds=True),
                )
