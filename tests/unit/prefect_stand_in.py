"""A stand-in for Prefect's API behind a real `PrefectClient`: busy refusals, then an answer."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
from prefect.client.orchestration import PrefectClient

# What Prefect's server answers when its database refused a transaction for a moment.
BUSY = httpx.Response(503, json={"exception_message": "Service Unavailable"})


class PrefectServerStandIn:
    """Prefect's API: `refusal` (a busy database's 503) `refusals` times, then `then`
    (200 with a slot's lease, or the status given).

    `client` has the signature of Prefect's `get_client`, so a test puts it in its place.
    """

    def __init__(self, refusals: int, then: int = 200, refusal: httpx.Response = BUSY) -> None:
        self.refusals = refusals
        self.then = then
        self.refusal = refusal
        self.requests = 0
        self.lease_id = uuid4()

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/csrf-token"):
            # CSRF protection off, as by default: Prefect's client stops asking.
            return httpx.Response(422, json={"detail": "CSRF protection is disabled."})
        self.requests += 1
        if self.requests <= self.refusals:
            return httpx.Response(
                self.refusal.status_code,
                headers=self.refusal.headers,
                content=self.refusal.content,
            )
        if self.then != 200:
            return httpx.Response(self.then, json={"details": "locked"})
        return httpx.Response(200, json={"lease_id": str(self.lease_id), "limits": []})

    def client(self, httpx_settings: dict[str, Any] | None = None) -> PrefectClient:
        transport = httpx.MockTransport(self.answer)
        settings = {**(httpx_settings or {}), "transport": transport}
        return PrefectClient("http://prefect.test/api", httpx_settings=settings)
