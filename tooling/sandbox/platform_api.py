"""The platform API: elements, `oauth/url`, and instances (under `/elements/api-v2`)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from tooling.sandbox.auth import check_optional_platform_auth, require_platform_auth
from tooling.sandbox.elements import Element, require_element
from tooling.sandbox.errors import PlatformError
from tooling.sandbox.provisioning import create_instance, update_instance
from tooling.sandbox.state import SandboxState, get_state
from tooling.sandbox.store import Instance
from tooling.sandbox.views import instance_json

router = APIRouter()

AUTHORIZE_PATH = "/provider/app/oauth/authorize"
_OAUTH_URL_PARAMETERS = ("apiKey", "apiSecret", "callbackUrl")


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        PlatformError: 400 when the body is not a JSON object (never quoting it).
    """
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise PlatformError(400, "The request body must be a JSON object.")
    return body


def build_oauth_url(request: Request, element: Element, params: dict[str, Any]) -> dict[str, str]:
    """Answer `oauth/url`: the sandbox provider's consent URL, built deterministically.

    The secret is required but, like on the platform, not checked at this step.

    Raises:
        PlatformError: 400 for a connector without OAuth 2.0, or naming the first missing
            parameter.
    """
    if not element.is_oauth2:
        raise PlatformError(
            400, f"The element '{element.key}' does not use OAuth 2.0 ({element.authentication})."
        )
    for name in _OAUTH_URL_PARAMETERS:
        value = params.get(name)
        if not isinstance(value, str) or not value:
            raise PlatformError(400, f"Missing required parameter '{name}'.")
    state = params.get("state") or element.key
    scope = params.get("scope") or "full"
    query = urlencode(
        [
            ("scope", str(scope)),
            ("response_type", "code"),
            ("redirect_uri", params["callbackUrl"]),
            ("state", str(state)),
            ("client_id", params["apiKey"]),
        ]
    )
    base = str(request.base_url).rstrip("/")
    return {"oauthUrl": f"{base}{AUTHORIZE_PATH}?{query}", "element": element.key}


def find_instance(state: SandboxState, raw_id: str, element_key_or_id: str | None) -> Instance:
    """The live instance with this id (and of this element, on the `/elements/...` aliases).

    Raises:
        PlatformError: 404 for an unknown element, or an unknown or deleted instance.
    """
    element = require_element(element_key_or_id) if element_key_or_id is not None else None
    numeric = raw_id.isascii() and raw_id.isdigit()
    instance = state.store.get(int(raw_id)) if numeric else None
    if instance is None or (element is not None and instance.element != element):
        raise PlatformError(404, f"No instance found with id {raw_id[:40]}.")
    return instance


def _path_element(request: Request) -> str | None:
    # The `/elements/{keyOrId}/instances...` aliases name the element in the path.
    key_or_id: str | None = request.path_params.get("key_or_id")
    return key_or_id


# -- elements -------------------------------------------------------------------------


@router.get("/elements/{key_or_id}")
async def get_element(request: Request, key_or_id: str) -> dict[str, Any]:
    """`GET /elements/{keyOrId}`: the element's definition, its configuration fields included."""
    require_platform_auth(request, get_state(request))
    return require_element(key_or_id).summary()


@router.get("/elements/{key_or_id}/oauth/url")
async def get_oauth_url(request: Request, key_or_id: str) -> dict[str, str]:
    """`GET /elements/{keyOrId}/oauth/url?apiKey&apiSecret&callbackUrl[&state][&scope]`."""
    check_optional_platform_auth(request, get_state(request))
    element = require_element(key_or_id)
    return build_oauth_url(request, element, dict(request.query_params))


@router.post("/elements/{key_or_id}/oauth/url")
async def post_oauth_url(request: Request, key_or_id: str) -> dict[str, str]:
    """`POST /elements/{keyOrId}/oauth/url` with the same parameters in a JSON body."""
    check_optional_platform_auth(request, get_state(request))
    element = require_element(key_or_id)
    return build_oauth_url(request, element, await read_json_object(request))


# -- instances --------------------------------------------------------------------------


@router.post("/instances")
@router.post("/elements/{key_or_id}/instances")
async def post_instance(request: Request) -> dict[str, Any]:
    """Create (authenticate) an instance with an authorization code."""
    state = get_state(request)
    require_platform_auth(request, state)
    body = await read_json_object(request)
    async with state.lock:
        return instance_json(create_instance(state, body, _path_element(request)))


@router.get("/instances")
@router.get("/elements/{key_or_id}/instances")
async def list_instances(request: Request) -> list[dict[str, Any]]:
    """List live instances; `tags[]` (repeatable) keeps those carrying every given tag.

    Quirks (`/_sandbox/quirks`): instances written in the last `listing_lag_seconds`
    are left out; with `ignore_tags_filter` the filter is not applied.
    """
    state = get_state(request)
    require_platform_auth(request, state)
    key_or_id = _path_element(request)
    element = require_element(key_or_id) if key_or_id is not None else None
    quirks = state.faults.quirks
    wanted = request.query_params.getlist("tags[]") + request.query_params.getlist("tags")
    if quirks.ignore_tags_filter:
        wanted = []
    now = state.clock()
    return [
        instance_json(instance)
        for instance in state.store.live()
        if (element is None or instance.element == element)
        and instance.listed_at(now, quirks.listing_lag_seconds)
        and all(tag in instance.tags for tag in wanted)
    ]


@router.get("/instances/{instance_id}")
@router.get("/elements/{key_or_id}/instances/{instance_id}")
async def get_instance(request: Request, instance_id: str) -> dict[str, Any]:
    """Read one instance, token included; its tags lag behind changes (quirks)."""
    state = get_state(request)
    require_platform_auth(request, state)
    instance = find_instance(state, instance_id, _path_element(request))
    lag = state.faults.quirks.listing_lag_seconds
    return instance_json(instance, tags=instance.tags_read_at(state.clock(), lag))


async def _update(request: Request, instance_id: str, *, partial: bool) -> dict[str, Any]:
    key_or_id = _path_element(request)
    state = get_state(request)
    require_platform_auth(request, state)
    find_instance(state, instance_id, key_or_id)
    body = await read_json_object(request)
    async with state.lock:
        # Looked up again under the lock: a concurrent DELETE may have won.
        instance = find_instance(state, instance_id, key_or_id)
        return instance_json(update_instance(state, instance, body, partial=partial))


@router.put("/instances/{instance_id}")
@router.put("/elements/{key_or_id}/instances/{instance_id}")
async def put_instance(request: Request, instance_id: str) -> dict[str, Any]:
    """Replace name, tags, configuration; with `providerData.code`, re-authenticate."""
    return await _update(request, instance_id, partial=False)


@router.patch("/instances/{instance_id}")
@router.patch("/elements/{key_or_id}/instances/{instance_id}")
async def patch_instance(request: Request, instance_id: str) -> dict[str, Any]:
    """Partly update; tags are replaced wholesale, configuration merged."""
    return await _update(request, instance_id, partial=True)


@router.delete("/instances/{instance_id}")
@router.delete("/elements/{key_or_id}/instances/{instance_id}")
async def delete_instance(request: Request, instance_id: str) -> dict[str, Any]:
    """Delete an instance; its token stops working."""
    state = get_state(request)
    require_platform_auth(request, state)
    async with state.lock:
        state.store.delete(find_instance(state, instance_id, _path_element(request)))
    return {}


async def _set_disabled(request: Request, instance_id: str, *, disabled: bool) -> dict[str, Any]:
    state = get_state(request)
    require_platform_auth(request, state)
    async with state.lock:
        instance = find_instance(state, instance_id, None)
        instance.disabled = disabled
        instance.updated_at = state.clock()
        return instance_json(instance)


@router.put("/instances/{instance_id}/enabled")
async def enable_instance(request: Request, instance_id: str) -> dict[str, Any]:
    """Enable an instance again."""
    return await _set_disabled(request, instance_id, disabled=False)


@router.delete("/instances/{instance_id}/enabled")
async def disable_instance(request: Request, instance_id: str) -> dict[str, Any]:
    """Disable an instance: hub calls answer 403 until it is enabled."""
    return await _set_disabled(request, instance_id, disabled=True)
