"""An async httpx client of the SAP Open Connectors platform API.

Example:
    ```python
    from open_connectors import OpenConnectorsClient

    async with OpenConnectorsClient(base_url, user_secret, organization_secret) as client:
        url = await client.get_oauth_url(
            "infusionsofterp", api_key=key, api_secret=secret,
            callback_url="https://auth.cloudelements.io/oauth", state=state,
        )
    ```
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr

from open_connectors.errors import (
    ApiError,
    AuthorizationCodeRejectedError,
    ConnectorNotFoundError,
    InstanceAuthenticationError,
    InstanceDisabledError,
    InstanceNotFoundError,
    OAuthAppRejectedError,
    OpenConnectorsError,
    PlatformAuthenticationError,
    PlatformUnavailableError,
    ProviderError,
)
from open_connectors.models import Element, Instance, InstanceRequest, OAuthUrl, Page
from open_connectors.redaction import install_httpx_log_redaction
from open_connectors.regions import normalize_base_url
from open_connectors.retry import RetryPolicy, parse_retry_after

__all__ = ["EnsuredInstance", "OpenConnectorsClient"]

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_PAGE_SIZE = 200
USER_AGENT = "prefect-open-connectors-auth/0.1"

Sleep = Callable[[float], Awaitable[None]]
CallKind = Literal["platform", "hub"]


@functools.cache
def _shared_tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process, shared by every client.

    httpx builds a new one for each client by default, loading the CA bundle each
    time (about 20 ms); a flow run makes several clients. Built as httpx would
    (certifi, or `SSL_CERT_FILE`/`SSL_CERT_DIR` when set).
    """
    return httpx.create_ssl_context()


class _PlatformAuth(httpx.Auth):
    """Adds `Authorization: User …, Organization …[, Element …]` to every request."""

    def __init__(
        self,
        user_secret: SecretStr,
        organization_secret: SecretStr,
        element_token: SecretStr | None,
    ) -> None:
        self._secrets = (user_secret, organization_secret, element_token)

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        """Set the header; secrets are revealed only here."""
        user, organization, element = self._secrets
        value = f"User {user.get_secret_value()}, Organization {organization.get_secret_value()}"
        if element is not None:
            value += f", Element {element.get_secret_value()}"
        request.headers["Authorization"] = value
        yield request


@dataclass(frozen=True)
class EnsuredInstance:
    """The outcome of `OpenConnectorsClient.ensure_instance`.

    Attributes:
        instance: The instance, with its token.
        created: False when an earlier attempt had already created it.
    """

    instance: Instance
    created: bool


class OpenConnectorsClient:
    """A typed client of the Open Connectors platform API.

    Every call has a timeout. Transient failures are retried according to
    `retry_policy`; a non-idempotent call (creating or re-authorizing an instance)
    is sent again only when the platform cannot have processed it.

    Args:
        base_url: The API base URL, e.g.
            `https://api.openconnectors.us2.ext.hana.ondemand.com/elements/api-v2`.
        user_secret: The user secret.
        organization_secret: The organization secret.
        element_token: An instance token, needed for hub calls (`ping`, paging).
        timeout: Seconds allowed for connecting, and for each read and write.
        retry_policy: When and how long to wait before retrying.
        transport: An httpx transport (tests use `httpx.MockTransport` or an ASGI app).
        sleep: The coroutine used to wait between retries.
    """

    def __init__(
        self,
        base_url: str,
        user_secret: SecretStr | str,
        organization_secret: SecretStr | str,
        *,
        element_token: SecretStr | str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry_policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        install_httpx_log_redaction()
        self.base_url = normalize_base_url(base_url)
        self.retry_policy = retry_policy or RetryPolicy()
        self._sleep = sleep
        self._has_element_token = element_token is not None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=_PlatformAuth(
                _secret(user_secret),
                _secret(organization_secret),
                _secret(element_token) if element_token is not None else None,
            ),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            verify=_shared_tls_context() if transport is None else True,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    async def __aenter__(self) -> OpenConnectorsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- connectors ---------------------------------------------------------------

    async def get_element(self, element_key: str) -> Element:
        """Read a connector (element) by key or id.

        Raises:
            ConnectorNotFoundError: The platform does not know the key.
        """
        response = await self._call(
            "GET",
            f"/elements/{_segment(element_key)}",
            operation=f"read the connector '{element_key}'",
            not_found=_connector_not_found(element_key),
        )
        return Element.model_validate(response.json())

    async def get_oauth_url(
        self,
        element_key: str,
        *,
        api_key: str,
        api_secret: SecretStr | str,
        callback_url: str,
        state: str,
        scope: str | None = None,
    ) -> OAuthUrl:
        """Ask the platform for the provider's consent URL.

        Sends the OAuth app's secret in a JSON body (`POST`). Only a platform that
        refuses that form (405) gets the documented GET form, whose query string the
        httpx log filter masks.

        Raises:
            ConnectorNotFoundError: The platform does not know the key.
        """
        payload: dict[str, str] = {
            "apiKey": api_key,
            "apiSecret": _secret(api_secret).get_secret_value(),
            "callbackUrl": callback_url,
            "state": state,
        }
        if scope:
            payload["scope"] = scope
        path = f"/elements/{_segment(element_key)}/oauth/url"
        operation = f"get the consent URL of connector '{element_key}'"
        not_found = _connector_not_found(element_key)
        response = await self._call(
            "POST", path, operation=operation, json=payload, idempotent=True, raise_errors=False
        )
        if response.status_code == 405:
            response = await self._call(
                "GET", path, operation=operation, params=payload, not_found=not_found
            )
        else:
            self._raise_for_answer(response, operation=operation, not_found=not_found)
        return OAuthUrl.model_validate(response.json())

    # -- instances ----------------------------------------------------------------

    async def create_instance(self, request: InstanceRequest) -> Instance:
        """Create (authenticate) an instance with an authorization code: `POST /instances`.

        Not idempotent: prefer `ensure_instance`, which survives a lost answer.

        Raises:
            AuthorizationCodeRejectedError: The code expired, was used, or is not ours.
            OAuthAppRejectedError: The provider refused the OAuth app's key or secret.
        """
        response = await self._call(
            "POST",
            "/instances",
            operation=f"create the instance '{request.name}'",
            json=request.to_body(),
            idempotent=False,
            not_found=_connector_not_found(request.element_key),
        )
        return Instance.model_validate(response.json())

    async def ensure_instance(
        self, request: InstanceRequest, *, idempotency_tag: str, attempts: int = 3
    ) -> EnsuredInstance:
        """Create the instance exactly once, tagged with `idempotency_tag`.

        Looks the tag up first, so a retry after a lost answer (the platform created
        the instance but the answer never arrived) adopts that instance instead of
        creating a second one, and never sends the single-use code twice.
        """
        tagged = request.model_copy(update={"tags": _with_tag(request.tags, idempotency_tag)})
        last_error: OpenConnectorsError | None = None
        for attempt in range(1, attempts + 1):
            existing = await self.find_instances(tags=[idempotency_tag])
            if existing:
                return EnsuredInstance(await self.get_instance(existing[0].id), created=False)
            try:
                return EnsuredInstance(await self.create_instance(tagged), created=True)
            except PlatformUnavailableError as exc:
                # The answer was lost or the platform failed mid-way: it may have
                # created the instance anyway, so look again before resending.
                last_error = exc
                if attempt < attempts:
                    await self._sleep(self.retry_policy.delay(attempt))
        assert last_error is not None
        raise last_error

    async def find_instances(self, *, tags: list[str] | None = None) -> list[Instance]:
        """List instances, optionally only those carrying every tag in `tags`."""
        params = [("tags[]", tag) for tag in tags or []]
        response = await self._call(
            "GET", "/instances", operation="list instances", params=params or None
        )
        return [Instance.model_validate(item) for item in response.json()]

    async def get_instance(self, instance_id: int) -> Instance:
        """Read one instance, its token included.

        Raises:
            InstanceNotFoundError: No such instance (deleted, or never created).
        """
        response = await self._call(
            "GET",
            f"/instances/{int(instance_id)}",
            operation=f"read instance {instance_id}",
            not_found=_instance_not_found(instance_id),
        )
        return Instance.model_validate(response.json())

    async def reauthorize_instance(self, instance_id: int, request: InstanceRequest) -> Instance:
        """Re-authorize an instance with a new code: `PUT /instances/{id}`; the id is kept.

        Raises:
            InstanceNotFoundError: No such instance.
            AuthorizationCodeRejectedError: The code expired, was used, or is not ours.
        """
        response = await self._call(
            "PUT",
            f"/instances/{int(instance_id)}",
            operation=f"re-authorize instance {instance_id}",
            json=request.to_body(),
            idempotent=False,
            not_found=_instance_not_found(instance_id),
        )
        return Instance.model_validate(response.json())

    async def delete_instance(self, instance_id: int) -> None:
        """Delete an instance; its token stops working.

        Raises:
            InstanceNotFoundError: No such instance.
        """
        await self._call(
            "DELETE",
            f"/instances/{int(instance_id)}",
            operation=f"delete instance {instance_id}",
            not_found=_instance_not_found(instance_id),
        )

    # -- hub calls (need the instance token) -----------------------------------------

    async def ping(self, hub: str) -> dict[str, Any]:
        """Check that the instance answers: `GET /hubs/{hub}/ping`.

        Raises:
            InstanceAuthenticationError: The token is invalid, deleted or revoked.
            InstanceDisabledError: The instance is disabled.
        """
        response = await self._call(
            "GET", f"/hubs/{_segment(hub)}/ping", operation="ping the instance", kind="hub"
        )
        body = response.json()
        return body if isinstance(body, dict) else {"answer": body}

    async def get_page(
        self,
        hub: str,
        resource: str,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        next_page: str | None = None,
        where: str | None = None,
    ) -> Page:
        """Read one page of a hub resource, e.g. `contacts`."""
        params: dict[str, str | int] = {"pageSize": page_size}
        if next_page:
            params["nextPage"] = next_page
        if where:
            params["where"] = where
        path = f"/hubs/{_segment(hub)}/{'/'.join(_segment(p) for p in resource.split('/'))}"
        response = await self._call(
            "GET", path, operation=f"read '{resource}'", params=params, kind="hub"
        )
        records = response.json()
        if not isinstance(records, list) or not all(isinstance(item, dict) for item in records):
            raise ApiError(
                f"Open Connectors answered '{resource}' with something other than a list of "
                "records",
                status_code=response.status_code,
            )
        total = response.headers.get("elements-total-count")
        returned = response.headers.get("elements-returned-count")
        cursor = response.headers.get("elements-next-page-token") or None
        # The platform's contract: stop when the cursor is missing or a page is empty.
        if returned == "0" or not records:
            cursor = None
        # Checked above: validating again would copy every record of every page.
        return Page.model_construct(
            records=records,
            next_page=cursor,
            total_count=int(total) if total and total.isdigit() else None,
        )

    async def iter_pages(
        self,
        hub: str,
        resource: str,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        where: str | None = None,
        max_pages: int | None = None,
    ) -> AsyncIterator[Page]:
        """Yield every page of a hub resource, following `elements-next-page-token`."""
        cursor: str | None = None
        seen: set[str] = set()
        count = 0
        while True:
            page = await self.get_page(
                hub, resource, page_size=page_size, next_page=cursor, where=where
            )
            yield page
            count += 1
            cursor = page.next_page
            if cursor is None or (max_pages is not None and count >= max_pages):
                return
            if cursor in seen:
                raise ApiError(
                    f"Open Connectors sent the same page cursor twice while paging '{resource}'",
                    status_code=200,
                )
            seen.add(cursor)

    async def iter_records(
        self,
        hub: str,
        resource: str,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        where: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every record of a hub resource, one page in memory at a time."""
        async for page in self.iter_pages(hub, resource, page_size=page_size, where=where):
            for record in page.records:
                yield record

    # -- transport ----------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        json: Any = None,
        params: Any = None,
        idempotent: bool | None = None,
        kind: CallKind = "platform",
        not_found: Callable[[httpx.Response, _ErrorBody], ApiError] | None = None,
        raise_errors: bool = True,
    ) -> httpx.Response:
        """Send a request with the retry policy, then turn an error answer into an exception."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        policy = self.retry_policy
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                if attempt < policy.max_attempts and policy.should_retry_error(
                    exc, idempotent=idempotent
                ):
                    await self._sleep(policy.delay(attempt))
                    continue
                host = urlsplit(self.base_url).netloc
                raise PlatformUnavailableError(
                    f"Could not reach Open Connectors at {host} to {operation}: "
                    f"{type(exc).__name__} after {attempt} attempt(s). Check the credentials "
                    "block's base_url and the network; if the platform is down, try again later."
                ) from None
            if (
                response.status_code >= 400
                and attempt < policy.max_attempts
                and policy.should_retry_status(response.status_code, idempotent=idempotent)
            ):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                await response.aclose()
                await self._sleep(policy.delay(attempt, retry_after))
                continue
            _release_stream(response)
            if raise_errors:
                self._raise_for_answer(
                    response, operation=operation, kind=kind, not_found=not_found, attempts=attempt
                )
            return response

    def _raise_for_answer(
        self,
        response: httpx.Response,
        *,
        operation: str,
        kind: CallKind = "platform",
        not_found: Callable[[httpx.Response, _ErrorBody], ApiError] | None = None,
        attempts: int = 1,
    ) -> None:
        """Raise the error that matches an error answer; do nothing on success."""
        status = response.status_code
        if status < 400:
            return
        body = _ErrorBody.parse(response)
        details: dict[str, Any] = {
            "status_code": status,
            "request_id": body.request_id,
            "platform_message": body.message,
            "provider_message": body.provider_message,
        }
        if status in (429, 500, 502, 503, 504) and not body.provider_message:
            what = "kept rate-limiting requests" if status == 429 else f"kept failing ({status})"
            raise PlatformUnavailableError(
                f"Open Connectors {what} while trying to {operation}, after {attempts} "
                "attempt(s). Try again later; if it persists, check the platform's status."
                + (f" Request id: {body.request_id}." if body.request_id else "")
            )
        if status == 401 and kind == "hub":
            raise InstanceAuthenticationError(
                f"Open Connectors refused the instance token while trying to {operation}: the "
                "instance was deleted, its token is wrong, or the provider revoked its grant. "
                "Re-authorize the instance",
                **details,
            )
        if status == 401 and not body.provider_message:
            raise PlatformAuthenticationError(
                f"Open Connectors rejected the user or organization secret while trying to "
                f"{operation}. Check user_secret, organization_secret and base_url (your "
                "region's API) in the Open Connectors credentials block",
                **details,
            )
        if status == 403 and kind == "hub":
            raise InstanceDisabledError(
                f"The instance is disabled in Open Connectors ({operation}). Enable it in "
                "Open Connectors or re-authorize it",
                **details,
            )
        if status == 404 and not_found is not None:
            raise not_found(response, body)
        if body.provider_message:
            error, description = body.provider_error()
            if error == "invalid_grant":
                raise AuthorizationCodeRejectedError(
                    f"The provider refused the authorization code ({description or error}). "
                    "Codes are single-use and expire within minutes: start a new authorization "
                    "run and approve it promptly",
                    **details,
                )
            if error in ("invalid_client", "unauthorized_client"):
                raise OAuthAppRejectedError(
                    f"The provider refused the OAuth app ({description or error}). Check "
                    "api_key, api_secret and callback_url in the OAuth app block against the "
                    "app registered with the provider",
                    **details,
                )
            raise ProviderError(
                f"The provider failed while Open Connectors tried to {operation}: "
                f"{description or body.provider_message}",
                **details,
            )
        raise ApiError(
            f"Open Connectors refused to {operation}: {body.message or response.reason_phrase}",
            **details,
        )


@dataclass(frozen=True)
class _ErrorBody:
    """The platform's error body `{requestId, message, providerMessage}`, read defensively."""

    request_id: str | None = None
    message: str | None = None
    provider_message: str | None = None

    @classmethod
    def parse(cls, response: httpx.Response) -> _ErrorBody:
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return cls()
        if not isinstance(data, dict):
            return cls()

        def text(key: str) -> str | None:
            value = data.get(key)
            return str(value)[:500] if value not in (None, "") else None

        return cls(text("requestId"), text("message"), text("providerMessage"))

    def provider_error(self) -> tuple[str | None, str | None]:
        """The RFC 6749 `error` and `error_description` inside `providerMessage`, if any."""
        if not self.provider_message:
            return None, None
        try:
            data = json.loads(self.provider_message)
        except json.JSONDecodeError:
            lowered = self.provider_message.lower()
            for error in ("invalid_grant", "invalid_client", "unauthorized_client"):
                if error in lowered:
                    return error, self.provider_message
            return None, self.provider_message
        if not isinstance(data, dict):
            return None, self.provider_message
        error = data.get("error")
        description = data.get("error_description")
        return (
            str(error) if error else None,
            str(description) if description else None,
        )


def _connector_not_found(element_key: str) -> Callable[[httpx.Response, _ErrorBody], ApiError]:
    def build(response: httpx.Response, body: _ErrorBody) -> ApiError:
        return ConnectorNotFoundError(
            f"Open Connectors has no connector with key '{element_key}'. Check element_key "
            "(for example 'infusionsofterp') and that the connector exists in your account",
            status_code=response.status_code,
            request_id=body.request_id,
            platform_message=body.message,
        )

    return build


def _instance_not_found(instance_id: int) -> Callable[[httpx.Response, _ErrorBody], ApiError]:
    def build(response: httpx.Response, body: _ErrorBody) -> ApiError:
        return InstanceNotFoundError(
            f"Open Connectors has no instance {instance_id}: it was deleted or never created",
            status_code=response.status_code,
            request_id=body.request_id,
            platform_message=body.message,
        )

    return build


def _release_stream(response: httpx.Response) -> None:
    """Let a read response be freed as soon as it is dropped.

    httpx binds each response and its stream in a reference cycle, so every body
    (a page of records, when paging) would otherwise wait for the cyclic garbage
    collector, several pages at a time. The body is read already.
    """
    if response.is_closed:
        response.stream = httpx.ByteStream(b"")


def _secret(value: SecretStr | str) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


def _segment(value: str) -> str:
    """Quote one path segment so that user input cannot change the path."""
    return quote(str(value), safe="")


def _with_tag(tags: list[str], tag: str) -> list[str]:
    return tags if tag in tags else [*tags, tag]
