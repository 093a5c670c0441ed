"""The platform's error shape, and the handlers that make every error answer JSON.

Open Connectors answers errors as `{"requestId": "<24 hex>", "message": "...",
"providerMessage": "..."}`. Messages never carry secrets, codes, tokens or request bodies.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("sandbox")

UNAUTHORIZED_MESSAGE = "Invalid Organization or User secret, or invalid Element token provided."

_STATUS_MESSAGES = {
    404: "Not found.",
    405: "Method not allowed.",
}


class PlatformError(Exception):
    """An error answer of the platform API, raised anywhere inside a route.

    Attributes:
        status_code: The HTTP status.
        message: The `message` of the body; must not contain secrets.
        provider_message: The `providerMessage`, only when the provider said something.
        headers: Extra response headers (e.g. `elements-element-instance-id`).
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        provider_message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Build the error; see the class attributes."""
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.provider_message = provider_message
        self.headers = dict(headers or {})


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised by fault injection to make the server close the connection without an answer.

    It derives from httpx's error so that an in-process client (`httpx.ASGITransport`
    re-raises the app's exceptions) sees the same exception type as a client on a real
    socket, which gets `RemoteProtocolError("Server disconnected without sending a
    response.")`. See `fault_asgi.drop_connection`.
    """


def invalid_input(what: str, exc: ValidationError) -> PlatformError:
    """A 400 saying where a body failed validation (without quoting the input)."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(body)'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )
    return PlatformError(400, f"Invalid {what}: {problems}")


def unauthorized() -> PlatformError:
    """The platform's answer to any bad or missing secret or token."""
    return PlatformError(401, UNAUTHORIZED_MESSAGE)


def new_request_id() -> str:
    """Return a request id like the platform's: 24 lowercase hex digits."""
    return secrets.token_hex(12)


def error_body(message: str, provider_message: str | None = None) -> dict[str, Any]:
    """Build the platform's error body."""
    body: dict[str, Any] = {"requestId": new_request_id(), "message": message}
    if provider_message is not None:
        body["providerMessage"] = provider_message
    return body


def error_response(
    status_code: int,
    message: str,
    *,
    provider_message: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build a JSON error response in the platform's shape."""
    return JSONResponse(
        error_body(message, provider_message), status_code=status_code, headers=headers
    )


async def _platform_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PlatformError)
    return error_response(
        exc.status_code, exc.message, provider_message=exc.provider_message, headers=exc.headers
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = _STATUS_MESSAGES.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    # Routes parse their input by hand; this only guards against a slip. The details
    # are not echoed because they could quote a request body.
    return error_response(400, "The request is not valid.")


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    # Starlette calls this even once a response has started; a deliberate drop (whose
    # answer is never sent) is not an error worth logging.
    if not isinstance(exc, ConnectionDropped):
        logger.error("unexpected error: %s", type(exc).__name__)
    return error_response(500, "The sandbox failed to answer the request.")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of `app` answer JSON in the platform's shape."""
    app.add_exception_handler(PlatformError, _platform_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
