"""The receiver's HTTP app: `GET /oauth/callback` and `GET /health`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from prefect.client.orchestration import PrefectClient
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks.prefect_client import prefect_client
from blocks.state_key import StateSigningKey
from callback_receiver.inflight import InFlightCallbacks, callback_key
from callback_receiver.limits import ClientRateLimiter, InProgressLimit, retry_after_header
from callback_receiver.links import RunLinks
from callback_receiver.outcomes import CallbackResult, Outcome
from callback_receiver.pages import render
from callback_receiver.query import Callback, MalformedCallback, read_callback
from callback_receiver.resumer import Resumer
from callback_receiver.settings import ReceiverSettings
from callback_receiver.signing import SignerSource
from open_connectors.authorization import StateSigner

logger = logging.getLogger("callback_receiver")
CALLBACK_PATH = "/oauth/callback"
# At shutdown, how long answers still being passed on to Prefect are waited for (the
# Prefect client closes afterwards).
SHUTDOWN_DRAIN_SECONDS = 30.0
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def create_app(
    settings: ReceiverSettings | None = None, *, resumer: Resumer | None = None
) -> FastAPI:
    """The receiver app; its Prefect client lives as long as the app.

    Args:
        settings: The receiver's settings; from `OC_CALLBACK_*` variables by default.
        resumer: A ready resumer (tests); by default one with a client of the Prefect
            API and the signer of the `settings.state_key_block` block.
    """
    settings = settings or ReceiverSettings()
    links = RunLinks(ui_url=settings.prefect_ui_url, api_url=settings.prefect_api_url)
    in_flight = InFlightCallbacks(
        answer_within=settings.answer_within_seconds,
        limit=InProgressLimit(settings.max_concurrent_callbacks),
    )
    per_client = ClientRateLimiter(
        burst=settings.client_burst, per_second=settings.client_per_second
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if resumer is not None:
            yield
            await in_flight.drain(SHUTDOWN_DRAIN_SECONDS)
            return
        async with _prefect_client(settings) as client:

            async def load_signer() -> StateSigner:
                key = await StateSigningKey.aload_or_create(settings.state_key_block, client=client)
                return key.signer()

            app.state.resumer = Resumer(
                client, signers=SignerSource(load_signer), wait_seconds=settings.wait_seconds
            )
            yield
            # Answers still being passed on finish before the client closes, within a bound.
            await in_flight.drain(SHUTDOWN_DRAIN_SECONDS)

    app = FastAPI(
        title="Open Connectors OAuth callback receiver",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        root_path=settings.root_path,
    )
    if resumer is not None:
        app.state.resumer = resumer

    def page(result: CallbackResult) -> HTMLResponse:
        headers = dict(_SECURITY_HEADERS)
        if result.retry_after is not None:
            headers["Retry-After"] = retry_after_header(result.retry_after)
        run_url = links.flow_run(result.flow_run_id) if result.flow_run_id else None
        return HTMLResponse(
            render(result, run_url=run_url), status_code=result.outcome.status_code, headers=headers
        )

    @app.get(CALLBACK_PATH, response_class=HTMLResponse)
    async def oauth_callback(request: Request) -> HTMLResponse:
        """The provider's redirect after the person's decision."""
        # The client address as uvicorn gives it (X-Forwarded-For from trusted proxies).
        address = request.client.host if request.client else "unknown"
        wait = per_client.acquire(address)
        if wait is not None:
            logger.info("Refused a callback: too many requests from one client.")
            return page(CallbackResult(Outcome.BUSY, retry_after=wait))
        try:
            callback = read_callback(request.query_params)
        except MalformedCallback as exc:
            logger.info("Refused a malformed callback: %s.", exc)
            return page(CallbackResult(Outcome.INVALID, detail=str(exc)))
        resumer: Resumer = request.app.state.resumer
        return page(
            await in_flight.answer(callback_key(callback), lambda: _pass_on(resumer, callback))
        )

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        """Liveness, and whether the Prefect API answers."""
        resumer: Resumer = request.app.state.resumer
        try:
            prefect_ok = await resumer.prefect_is_healthy()
        except Exception:  # a health check reports, it does not fail
            prefect_ok = False
        return JSONResponse(
            {"status": "ok", "prefect": "ok" if prefect_ok else "unreachable"},
            status_code=200 if prefect_ok else 503,
        )

    return app


async def _pass_on(resumer: Resumer, callback: Callback) -> CallbackResult:
    """Hand a well-formed callback to the resumer; Prefect out of reach is "try again"."""
    try:
        return await resumer.handle(callback)
    except (httpx.HTTPError, OSError) as exc:
        # Prefect unreachable or overloaded: the code is still unused, a reload retries.
        logger.warning("Could not reach Prefect for a callback: %s.", type(exc).__name__)
        return CallbackResult(Outcome.NOT_READY)


@asynccontextmanager
async def _prefect_client(settings: ReceiverSettings) -> AsyncIterator[PrefectClient]:
    """A Prefect client of the configured API (with Prefect's own auth settings).

    It asks again soon when Prefect's database is busy for a moment: the person who
    just authorized waits on its answers (`blocks.prefect_client`).
    """
    updates = {PREFECT_API_URL: settings.prefect_api_url} if settings.prefect_api_url else {}
    with temporary_settings(updates=updates):
        async with prefect_client() as client:
            yield client
