"""The sandbox ASGI app: platform API, provider stand-in, landing page and admin routes."""

from __future__ import annotations

from fastapi import FastAPI

from tooling.sandbox import admin, admin_faults, hub_api, landing, platform_api, provider
from tooling.sandbox.clock import Clock, system_clock
from tooling.sandbox.config import SandboxConfig
from tooling.sandbox.errors import install_error_handlers
from tooling.sandbox.fault_asgi import hide_dropped_connections_from_uvicorn
from tooling.sandbox.middleware import RequestJournalMiddleware
from tooling.sandbox.oauth_server import OAuthServer
from tooling.sandbox.state import SandboxState

API_PREFIX = "/elements/api-v2"


def create_app(config: SandboxConfig | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build a sandbox with its own in-memory state.

    Args:
        config: The configuration; the defaults when None.
        clock: Epoch-seconds clock; tests pass a `ManualClock` to expire codes without sleeping.

    Returns:
        The app. Its state is `app.state.sandbox` (a `SandboxState`).

    Example:
        ```python
        app = create_app(SandboxConfig(records_per_resource=100_000))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9999") as c:
            await c.get("/_sandbox/health")
        ```
    """
    config = config or SandboxConfig()
    clock = clock or system_clock
    state = SandboxState(config=config, clock=clock, oauth=OAuthServer(config, clock))

    app = FastAPI(
        title="Open Connectors sandbox",
        docs_url=None,  # the docs pages load external assets; the sandbox serves none
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,  # a 307 without a JSON body would surprise API clients
    )
    app.state.sandbox = state
    install_error_handlers(app)
    app.add_middleware(RequestJournalMiddleware, state=state)
    app.include_router(platform_api.router, prefix=API_PREFIX)
    app.include_router(hub_api.router, prefix=API_PREFIX)
    app.include_router(provider.router, prefix="/provider")
    app.include_router(landing.router)
    app.include_router(admin.router, prefix="/_sandbox")
    app.include_router(admin_faults.router, prefix="/_sandbox")
    hide_dropped_connections_from_uvicorn()
    return app
