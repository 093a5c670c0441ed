"""The Keap provider stand-in: consent page, decision, and token endpoint (under `/provider`).

The decision redirects as Keap does (infusionsoft-php#41, #115): an approval with
`code`, `scope=full|<account>` and `state`; a refusal with `error=access_denied`,
`error_uri`, `error_description=User denied access to resource` and `state`.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from tooling.sandbox.oauth_server import AuthorizationRequestError, OAuthError, with_query
from tooling.sandbox.pages import HTML_HEADERS, render_consent, render_error
from tooling.sandbox.state import get_state

router = APIRouter()

DENIED_DESCRIPTION = "User denied access to resource"
DENIED_ERROR_URI_PATH = "/provider/docs/oauth-errors#access_denied"
_TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded form of a request (first value of each field).

    Any other content type reads as an empty form, which is what Keap's token
    endpoint effectively does with a JSON body.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    form: dict[str, str] = {}
    text = (await request.body()).decode("utf-8", errors="replace")
    for name, value in parse_qsl(text, keep_blank_values=True):
        form.setdefault(name, value)
    return form


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """The client id and secret of an HTTP Basic `Authorization` header, or None."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, client_secret = decoded.partition(":")
    return (client_id, client_secret) if colon else None


def _error_page(message: str) -> HTMLResponse:
    return HTMLResponse(render_error(message), status_code=400, headers=HTML_HEADERS)


@router.get("/app/oauth/authorize", response_class=HTMLResponse)
async def authorize(request: Request) -> HTMLResponse:
    """The consent page, or a 400 page (never a redirect) for an invalid request."""
    state = get_state(request)
    try:
        auth_request = state.oauth.validate_authorization_request(dict(request.query_params))
    except AuthorizationRequestError as exc:
        return _error_page(str(exc))
    page = render_consent(
        app_name=auth_request.app.name,
        account=state.config.account,
        redirect_host=urlsplit(auth_request.redirect_uri).netloc,
        fields=auth_request.form_fields(),
    )
    return HTMLResponse(page, headers=HTML_HEADERS)


@router.post("/app/oauth/decision", response_model=None)
async def decision(request: Request) -> Response:
    """Send the person back to the app: 303 with a code, or with `error=access_denied`."""
    state = get_state(request)
    form = await read_form(request)
    try:
        auth_request = state.oauth.validate_authorization_request(form)
    except AuthorizationRequestError as exc:
        return _error_page(str(exc))
    choice = form.get("decision")
    if choice == "approve":
        async with state.lock:
            code = state.oauth.issue_code(auth_request)
        params = [("code", code), ("scope", f"full|{state.config.account}")]
    elif choice == "deny":
        error_uri = str(request.base_url).rstrip("/") + DENIED_ERROR_URI_PATH
        params = [
            ("error", "access_denied"),
            ("error_uri", error_uri),
            ("error_description", DENIED_DESCRIPTION),
        ]
    else:
        return _error_page("Choose Allow or Deny.")
    if auth_request.state is not None:
        params.append(("state", auth_request.state))
    location = with_query(auth_request.redirect_uri, params)
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


@router.post("/token")
async def token(request: Request) -> JSONResponse:
    """Keap's token endpoint: `authorization_code` and (rotating) `refresh_token` grants."""
    state = get_state(request)
    form = await read_form(request)
    try:
        async with state.lock:
            tokens = state.oauth.token_request(form, basic_credentials(request))
    except OAuthError as exc:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=_TOKEN_HEADERS)
    return JSONResponse(tokens.body(), headers=_TOKEN_HEADERS)
