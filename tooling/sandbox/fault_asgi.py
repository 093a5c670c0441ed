"""Carrying out a fault action on one ASGI request, the way a client on a socket sees it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http import HTTPStatus
from typing import NoReturn

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tooling.sandbox.errors import ConnectionDropped, error_body
from tooling.sandbox.faults import (
    CommitThenDelayAction,
    CommitThenDropAction,
    CommitThenStatusAction,
    DelayAction,
    FaultAction,
    PassAction,
    ProviderForbiddenAction,
    ResetAction,
    StatusAction,
)

__all__ = [
    "ConnectionDropped",
    "drop_connection",
    "hide_dropped_connections_from_uvicorn",
    "serve_with_fault",
]

# A header name with a space: every HTTP/1.1 encoder must refuse it (see drop_connection).
_UNSENDABLE_HEADER = (b"x-sandbox dropped-connection", b"1")


async def drop_connection(send: Send) -> NoReturn:
    """Make the server close the connection without writing a byte of an answer.

    ASGI has no message for this, and raising before `http.response.start` is not
    enough: Starlette's ServerErrorMiddleware and then uvicorn answer 500 instead. So
    this starts a response with a header the server's HTTP encoder refuses before
    writing anything (h11, and httptools, validate header names first). Everyone on
    the way now counts the response as started, so when `ConnectionDropped` reaches
    uvicorn it closes the transport rather than answer.

    Raises:
        ConnectionDropped: Always.
    """
    with contextlib.suppress(Exception):  # the refusal is the point
        await send({"type": "http.response.start", "status": 500, "headers": [_UNSENDABLE_HEADER]})
    raise ConnectionDropped("Injected fault: connection closed without an answer.")


async def _discard(message: Message) -> None:
    """Swallow the app's answer: the request is processed but the answer never leaves."""


FORBIDDEN_MESSAGE = "Access to the resource by the provider is forbidden."


def _status_response(action: StatusAction | CommitThenStatusAction) -> Response:
    if action.status in (204, 304):  # these statuses cannot carry a body
        return Response(status_code=action.status, headers=action.headers)
    body = action.body
    if body is None:
        phrase = HTTPStatus(action.status).phrase
        body = error_body(f"Injected fault: {action.status} {phrase}.")
    return JSONResponse(body, status_code=action.status, headers=action.headers)


async def serve_with_fault(
    action: FaultAction | None,
    latency_seconds: float,
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Serve one request through `app`, disturbed by `action` (None: undisturbed).

    Args:
        action: The action the request took from a fault rule, or None.
        latency_seconds: Added latency, waited first (0 for none).
        app: The sandbox app behind the middleware.
        scope: The request's ASGI scope.
        receive: The ASGI receive channel.
        send: The ASGI send channel.

    Raises:
        ConnectionDropped: For `reset` and `commit_then_drop`; the server then closes
            the connection. (`commit_then_delay` holds the real answer; a client
            that stops waiting closes the connection itself.)
    """
    if latency_seconds > 0:
        await asyncio.sleep(latency_seconds)
    match action:
        case None | PassAction():
            await app(scope, receive, send)
        case DelayAction(seconds=seconds):
            await asyncio.sleep(seconds)
            await app(scope, receive, send)
        case StatusAction():
            await _status_response(action)(scope, receive, send)
        case ProviderForbiddenAction(provider_message=provider_message):
            body = error_body(FORBIDDEN_MESSAGE, provider_message)
            await JSONResponse(body, status_code=403)(scope, receive, send)
        case ResetAction():
            await drop_connection(send)
        case CommitThenDropAction():
            await app(scope, receive, _discard)
            await drop_connection(send)
        case CommitThenStatusAction():
            await app(scope, receive, _discard)
            await _status_response(action)(scope, receive, send)
        case CommitThenDelayAction(seconds=seconds):
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await app(scope, receive, hold)
            await asyncio.sleep(seconds)
            for message in held:
                await send(message)


class _HideDroppedConnections(logging.Filter):
    """Drop uvicorn's "Exception in ASGI application" record for a deliberate drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        return not isinstance(exception, ConnectionDropped)


def hide_dropped_connections_from_uvicorn() -> None:
    """Keep injected drops out of uvicorn's error log (the access log still shows them).

    Idempotent; filters only `ConnectionDropped`, so real errors are still logged.
    """
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedConnections) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_HideDroppedConnections())
