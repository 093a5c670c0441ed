"""Creating and updating instances: the platform's checks, in its order, and the code exchange.

Bodies arrive as parsed JSON objects; everything here is synchronous, so a caller
holding the state lock changes instances atomically.
"""

from __future__ import annotations

import re
from typing import Any

from tooling.sandbox.elements import Element, require_element
from tooling.sandbox.errors import PlatformError
from tooling.sandbox.oauth_server import OAuthError
from tooling.sandbox.state import SandboxState
from tooling.sandbox.store import Instance, ProviderGrant
from tooling.sandbox.views import MASK

MISSING_CODE_MESSAGE = (
    "You must provide an OAuth code in order to create an instance of this element"
)
PROVIDER_FAILURE_MESSAGE = "Failed to obtain an OAuth access token from the provider."
_TAG_PATTERN = re.compile(r"<[^>]*>")


def sanitize_text(value: str) -> str:
    """Strip HTML tags, as the platform does to names and tags: `<a href=x>@n</a>` -> `@n`."""
    previous = None
    while previous != value:  # until stable, so nested tags cannot reassemble
        previous, value = value, _TAG_PATTERN.sub("", value)
    return value.strip()


def element_of(body: dict[str, Any], path_key_or_id: str | None) -> Element:
    """The element of a create request: from the path if given, else from `element`.

    Raises:
        PlatformError: 400 without an element, 404 for an unknown one.
    """
    if path_key_or_id is not None:
        return require_element(path_key_or_id)
    reference = body.get("element")
    key_or_id = None
    if isinstance(reference, dict):
        key_or_id = reference.get("key") or reference.get("id")
    if isinstance(key_or_id, bool) or not isinstance(key_or_id, str | int):
        raise PlatformError(400, "Missing required property 'element' (with a 'key' or an 'id').")
    return require_element(str(key_or_id))


def parse_configuration(raw: object) -> dict[str, Any]:
    """The `configuration` object of a body (absent means empty).

    Raises:
        PlatformError: 400 when it is not an object.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PlatformError(400, "The 'configuration' property must be an object.")
    return dict(raw)


def check_configuration(element: Element, configuration: dict[str, Any]) -> None:
    """Require every field the element's definition marks required, in display order.

    Raises:
        PlatformError: 400 naming the first missing or invalid property.
    """
    for field in element.required_fields:
        value = configuration.get(field.key)
        if not isinstance(value, str) or not value.strip():
            raise PlatformError(400, f"Missing required configuration property '{field.key}'.")
    for field in element.configuration:
        value = configuration.get(field.key)
        if field.pattern is None or not isinstance(value, str) or not value.strip():
            continue
        if field.pattern.fullmatch(value) is None:
            raise PlatformError(
                400,
                f"Invalid configuration property '{field.key}' ({field.name}): "
                f"{field.description or 'malformed value.'}",
            )


def provider_code(body: dict[str, Any]) -> str | None:
    """The authorization code in `providerData.code`, or None."""
    provider_data = body.get("providerData")
    code = provider_data.get("code") if isinstance(provider_data, dict) else None
    return code if isinstance(code, str) and code else None


def parse_name(raw: object, *, default: str) -> str:
    """The sanitized `name`, or `default` when absent.

    Raises:
        PlatformError: 400 when it is not a string or is empty once sanitized.
    """
    if raw is None:
        return default
    if not isinstance(raw, str):
        raise PlatformError(400, "The 'name' property must be a string.")
    name = sanitize_text(raw)
    if not name:
        raise PlatformError(400, "The 'name' property must not be empty.")
    return name


def parse_tags(raw: object) -> list[str] | None:
    """The sanitized tags (strings, or old-style `{"name": ...}` objects), or None if absent.

    Raises:
        PlatformError: 400 when tags are not a list of strings.
    """
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise PlatformError(400, "The 'tags' property must be a list of strings.")
    tags: list[str] = []
    for item in raw:
        text = item.get("name") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise PlatformError(400, "The 'tags' property must be a list of strings.")
        tag = sanitize_text(text)
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def keep_masked(given: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Keep the stored value where a caller sent back a masked one it read earlier."""
    return {
        key: current[key] if value == MASK and key in current else value
        for key, value in given.items()
    }


def exchange(state: SandboxState, code: str, configuration: dict[str, Any]) -> ProviderGrant:
    """Exchange the code with the sandbox provider, as the platform does server-side.

    Raises:
        PlatformError: 400 quoting the provider's error body as `providerMessage`.
    """
    try:
        tokens = state.oauth.exchange_code(
            code=code,
            client_id=configuration["oauth.api.key"],
            client_secret=configuration["oauth.api.secret"],
            redirect_uri=configuration["oauth.callback.url"],
        )
    except OAuthError as exc:
        raise PlatformError(
            400, PROVIDER_FAILURE_MESSAGE, provider_message=exc.raw_body()
        ) from None
    return ProviderGrant(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=state.clock() + tokens.expires_in,
    )


def create_instance(
    state: SandboxState, body: dict[str, Any], path_key_or_id: str | None
) -> Instance:
    """Run the platform's checks in order, exchange the code and store the new instance.

    Order: element known (404); configuration (400); code present (400); name and
    tags (400); code exchange (400 with `providerMessage`). Authentication is the caller's.

    Raises:
        PlatformError: The first check that fails.
    """
    element = element_of(body, path_key_or_id)
    configuration = parse_configuration(body.get("configuration"))
    check_configuration(element, configuration)
    code = provider_code(body)
    if code is None and element.is_oauth2:
        raise PlatformError(400, MISSING_CODE_MESSAGE)
    name = parse_name(body.get("name"), default=element.key)
    tags = parse_tags(body.get("tags")) or []
    # A basic-authentication connector takes its credentials from the configuration.
    grant = exchange(state, code, configuration) if code is not None and element.is_oauth2 else None
    return state.store.add(
        name=name,
        element=element,
        tags=tags,
        configuration=configuration,
        grant=grant,
        now=state.clock(),
    )


def update_instance(
    state: SandboxState, instance: Instance, body: dict[str, Any], *, partial: bool
) -> Instance:
    """Apply a PUT (`partial=False`) or PATCH (`partial=True`) body to an instance.

    PUT replaces the configuration when one is given, PATCH merges it; both replace
    the tags wholesale. With `providerData.code` the instance is re-authenticated:
    same id, same token, `valid` again.

    Raises:
        PlatformError: The first check that fails; the instance is then unchanged.
    """
    if body.get("element") is not None and element_of(body, None) != instance.element:
        raise PlatformError(400, "The element of an instance cannot be changed.")
    configuration = instance.configuration
    if "configuration" in body:
        given = keep_masked(parse_configuration(body["configuration"]), instance.configuration)
        configuration = {**instance.configuration, **given} if partial else given
    code = provider_code(body)
    if "configuration" in body or code is not None:
        check_configuration(instance.element, configuration)
    name = parse_name(body.get("name"), default=instance.name)
    tags = parse_tags(body.get("tags"))
    if code is not None and instance.element.is_oauth2:
        instance.grant = exchange(state, code, configuration)
        instance.valid = True
    now = state.clock()
    instance.name = name
    instance.configuration = configuration
    if tags is not None and tags != instance.tags:
        instance.previous_tags, instance.tags_changed_at = instance.tags, now
        instance.tags = tags
    instance.updated_at = instance.written_at = now
    return instance
