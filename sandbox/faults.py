"""The place where fault injection will plug in (not built yet).

`RequestJournalMiddleware` asks the app's `FaultInjector` about every request
(except `/_sandbox/*`) before routing it. A later injector can:

- add latency: sleep, then return None;
- script an answer per route: return an ASGI app (e.g. a `JSONResponse(..., 503)`);
- drop the connection: raise, or return an app that closes without answering.

Its configuration would come from new `/_sandbox/faults` admin routes.
"""

from __future__ import annotations

from typing import Protocol

from starlette.types import ASGIApp, Scope


class FaultInjector(Protocol):
    """Decides, per request, whether to disturb it."""

    async def intercept(self, scope: Scope) -> ASGIApp | None:
        """Return an ASGI app to answer instead of the sandbox, or None to proceed."""
        ...


class NoFaults:
    """The default injector: every request proceeds untouched."""

    async def intercept(self, scope: Scope) -> ASGIApp | None:
        """Let the request proceed."""
        return None
