"""Per-request bookkeeping: the access log line, the journal, and fault injection."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tooling.sandbox.clock import iso_utc
from tooling.sandbox.fault_asgi import ConnectionDropped, serve_with_fault
from tooling.sandbox.faults import FaultAction
from tooling.sandbox.paths import ADMIN_PREFIX, is_admin_path
from tooling.sandbox.state import SandboxState

__all__ = ["ADMIN_PREFIX", "RequestJournalMiddleware", "is_admin_path"]

access_logger = logging.getLogger("sandbox.access")

DROPPED_STATUS = 0
"""The journal's status for a request whose connection closed without an answer."""


class RequestJournalMiddleware:
    """Logs one line per request and journals it; never the query string or the body.

    Every request but `/_sandbox/*` first goes through the fault rules (see faults.py).

    uvicorn's own access log is off: it prints query strings, and the GET form of
    `oauth/url` carries `apiSecret` there, like the landing page carries the code.
    """

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        """Wrap `app`, journaling into `state`."""
        self.app = app
        self.state = state

    async def _next_action(self, method: str, path: str) -> FaultAction | None:
        faults = self.state.faults
        if not faults.armed:  # the usual case: no lock taken at all
            return None
        async with self.state.lock:  # concurrent requests each take exactly one action
            return faults.take(method, path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, recording its outcome."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        admin = is_admin_path(path)
        started = time.perf_counter()
        status = 500
        fault: str | None = None

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if admin:
                await self.app(scope, receive, send_recording_status)
            else:
                action = await self._next_action(method, path)
                fault = action.type if action is not None else None
                await serve_with_fault(
                    action,
                    self.state.faults.latency_seconds,
                    self.app,
                    scope,
                    receive,
                    send_recording_status,
                )
        except ConnectionDropped:
            status = DROPPED_STATUS
            raise
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            suffix = f" fault={fault}" if fault else ""
            access_logger.info("%s %s %d %.1fms%s", method, path, status, elapsed_ms, suffix)
            if not admin:
                self.state.journal.record(
                    method=method,
                    path=path,
                    status=status,
                    at=iso_utc(self.state.clock(), milliseconds=True),
                    fault=fault,
                )
