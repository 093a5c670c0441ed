"""A stand-in for Open Connectors' own OAuth callback page (`https://auth.cloudelements.io/oauth`).

It shows the address it was opened with, so a person can paste it into the Prefect
resume form.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tooling.sandbox.pages import HTML_HEADERS, render_landing

router = APIRouter()


@router.get("/oauth/landing", response_class=HTMLResponse)
async def landing(request: Request) -> HTMLResponse:
    """Show the full redirect address and its `code` (or `error`)."""
    params = request.query_params
    page = render_landing(
        url=str(request.url),
        code=params.get("code"),
        state=params.get("state"),
        error=params.get("error"),
        error_description=params.get("error_description"),
    )
    return HTMLResponse(page, headers=HTML_HEADERS)
