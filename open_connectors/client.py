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

Sending a single-use code at most once (`ensure_instance`, `ensure_reauthorized`):
look the instance up by this run's tag first (a retry or replay adopts it), then
send. Transport retries (`RetryPolicy`, in `_call`) resend the code only after an
answer proving nothing was processed: no connection, a connect or pool timeout,
408, 429, 503. After an ambiguous answer (read timeout, write error or connection
lost after sending, 500, 502, 504) the code is never sent again: the instance is
looked up by its tag with bounded backoff (`ambiguous_lookup_seconds`, 60 s by
default: N = 10 more look-ups, 1 s doubling to 8 s apart), adopted when it shows,
else `InstanceOutcomeUnknownError` says that a Retry of the same run adopts it.

Requests of one `ensure_instance` call, with `max_attempts` = A (4 by default) and
N = len(look_up_delays(ambiguous_lookup_seconds)) (10 by default):

- a lasting outage (503 to everything): exactly A = 4. The first look-up fails
  with `PlatformUnavailableError`, and nothing is sent;
- at worst, whatever the faults: A for the first look-up, A POSTs (resent only
  after not-processed answers), N look-ups of up to A list requests each, and up
  to A reads by id of the instance found: (N + 3) * A = 52 by default. The code
  reaches the platform's processing at most once: it is resent only after the
  answers that prove the earlier request was not processed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from open_connectors.definitions import ConnectorDefinition
from open_connectors.errors import (
    ApiError,
    AuthorizationCodeRejectedError,
    ConfigurationError,
    ConnectorNotFoundError,
    DuplicateInstancesError,
    InstanceAuthenticationError,
    InstanceDisabledError,
    InstanceNotFoundError,
    InstanceOutcomeUnknownError,
    OAuthAppRejectedError,
    PlatformAuthenticationError,
    PlatformUnavailableError,
    ProviderError,
    ProviderForbiddenError,
)
from open_connectors.models import Element, Instance, InstanceBody, OAuthUrl, Page
from open_connectors.redaction import install_httpx_log_redaction
from open_connectors.regions import normalize_base_url
from open_connectors.retry import (
    AMBIGUOUS_STATUSES,
    RetryPolicy,
    look_up_delays,
    parse_retry_after,
)
from open_connectors.tags import check_user_tags, tags_after_reauthorization
from open_connectors.tls import shareable

__all__ = ["EnsuredInstance", "OpenConnectorsClient"]

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_AMBIGUOUS_LOOKUP_SECONDS = 60.0
DEFAULT_PAGE_SIZE = 200
USER_AGENT = "prefect-open-connectors-auth/0.1"

Sleep = Callable[[float], Awaitable[None]]
OnSend = Callable[[], Awaitable[None]]
CallKind = Literal["platform", "hub"]
_Model = TypeVar("_Model", bound=BaseModel)
_INSTANCE_LIST = TypeAdapter(list[Instance])


def shared_tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process and CA setting, shared by every client.

    httpx builds a new one for each client by default, loading the CA bundle each
    time (about 20 ms); a flow run makes several clients. Built as httpx would
    (certifi, or `SSL_CERT_FILE`/`SSL_CERT_DIR` when set: one per value, so a run
    forked with other values gets its own), and made safe to share (`open_connectors.tls`).
    """
    return _tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    # The arguments are the cache key only: httpx reads the same variables itself.
    return shareable(httpx.create_ssl_context())


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


class _AmbiguousAnswer(Exception):
    """A non-idempotent request may or may not have been processed; never resend it.

    Attributes:
        what: What happened, for the message (never a secret): `HTTP 504`, `ReadTimeout`.
    """

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True)
class EnsuredInstance:
    """The outcome of `ensure_instance` or `ensure_reauthorized`.

    Attributes:
        instance: The instance, with its token.
        created: True when this call's request created (or re-authorized) it; False
            when it was adopted: an earlier attempt, or this call's request whose
            answer was lost, had done it.
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
        ambiguous_lookup_seconds: How long to look for an instance after an
            ambiguous answer to the request that carried its code.
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
        ambiguous_lookup_seconds: float = DEFAULT_AMBIGUOUS_LOOKUP_SECONDS,
    ) -> None:
        install_httpx_log_redaction()
        self.base_url = normalize_base_url(base_url)
        self.retry_policy = retry_policy or RetryPolicy()
        self.ambiguous_lookup_seconds = max(float(ambiguous_lookup_seconds), 0.0)
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
            verify=shared_tls_context() if transport is None else True,
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
        return _parse(Element, response, "the connector")

    async def get_connector_definition(self, key_or_id: str) -> ConnectorDefinition:
        """Read a connector's own definition: `GET /elements/{keyOrId}`.

        Its authentication type and its `configuration` fields (required, defaults,
        types) are what `open_connectors.connectors.prepare_configuration` checks.

        Raises:
            ConnectorNotFoundError: The platform does not know the key (its words quoted).
            ApiError: The answer is not a connector definition.
        """
        response = await self._call(
            "GET",
            f"/elements/{_segment(key_or_id)}",
            operation=f"read the definition of connector '{key_or_id}'",
            not_found=_connector_not_found(key_or_id),
        )
        try:
            return ConnectorDefinition.model_validate(response.json())
        except (ValueError, UnicodeDecodeError):  # not JSON, or not a definition
            raise ApiError(
                f"Open Connectors answered the definition of connector '{key_or_id}' with "
                "something that is not a connector definition. Check the credentials "
                "block's base_url (it must end in /elements/api-v2)",
                status_code=response.status_code,
            ) from None

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
        return _parse(OAuthUrl, response, "the consent URL request")

    # -- instances ----------------------------------------------------------------

    async def create_instance(self, body: InstanceBody) -> Instance:
        """Create (authenticate) an instance with an authorization code: `POST /instances`.

        Not idempotent and sent once: prefer `ensure_instance`, which survives a lost
        answer.

        Raises:
            AuthorizationCodeRejectedError: The code expired, was used, or is not ours.
            OAuthAppRejectedError: The provider refused the OAuth app or its callback URL.
            PlatformUnavailableError: The platform failed; the request may have been
                processed when the answer was ambiguous.
        """
        response = await self._call(
            "POST",
            "/instances",
            operation=f"create the instance '{body.name}'",
            json=body.to_body(),
            idempotent=False,
            not_found=_connector_not_found(body.element_key),
        )
        return _parse(Instance, response, "the creation of an instance")

    async def ensure_instance(
        self,
        body: InstanceBody,
        *,
        run_tag: str,
        sent_before: bool = False,
        on_send: OnSend | None = None,
    ) -> EnsuredInstance:
        """Create the instance once for this run, sending its single-use code at most once.

        The instance is tagged with `run_tag`. The tag is looked up first: an
        instance carrying exactly that tag is adopted (a retry or a replay), two or
        more are refused. Otherwise `POST /instances` is sent; after an ambiguous
        answer the tag is looked up with bounded backoff instead of sending again
        (see the module docstring).

        Args:
            body: What to create; its tags are the person's (reserved prefixes refused).
            run_tag: This run's tag, e.g. `tags.run_tag(flow_run_id)`.
            sent_before: An earlier attempt of this run already sent this code (the
                caller keeps a durable marker): never send, only look up.
            on_send: Awaited right before the code is sent, e.g. to persist that marker.

        Returns:
            The instance with its token, and whether this call created it.

        Raises:
            ConfigurationError: A user tag uses a reserved prefix (before any request).
            DuplicateInstancesError: Several instances carry `run_tag`.
            InstanceOutcomeUnknownError: The code was sent, the answer was ambiguous,
                and the instance did not show within `ambiguous_lookup_seconds`.
            PlatformUnavailableError: The platform failed and the code was not
                processed (or never sent): sending it again later is safe.
            AuthorizationCodeRejectedError: The provider refused the code.
        """
        tag = run_tag
        check_user_tags(t for t in body.tags if t != tag)
        tagged = body.model_copy(update={"tags": _with_tag(body.tags, tag)})

        async def send() -> Instance:
            return await self._send_code(
                "POST",
                "/instances",
                tagged,
                operation=f"create the instance '{body.name}'",
                not_found=_connector_not_found(body.element_key),
            )

        return await self._at_most_once(
            look_up=lambda: self._find_tagged(tag),
            send=send,
            sent_before=sent_before,
            on_send=on_send,
            done=f"created the instance '{body.name}'",
            tag=tag,
        )

    async def ensure_reauthorized(
        self,
        instance_id: int,
        body: InstanceBody,
        *,
        mark_tag: str,
        sent_before: bool = False,
        on_send: OnSend | None = None,
    ) -> EnsuredInstance:
        """Re-authorize an instance once for this run: `PUT /instances/{id}` at most once.

        The instance is read first: if it carries `mark_tag`, an earlier attempt's
        `PUT` went through and is adopted. Otherwise the `PUT` carries the code and
        the instance's current tags, older re-authorization marks replaced by
        `mark_tag` (`PUT` replaces tags wholesale). After an ambiguous answer the
        instance is read with bounded backoff (its tags may lag) until the mark shows.

        Args:
            instance_id: The instance; its id is kept.
            body: The full create body with the new code; its tags are replaced.
            mark_tag: This run's mark, e.g. `tags.reauthorization_tag(flow_run_id)`.
            sent_before: An earlier attempt of this run already sent this code.
            on_send: Awaited right before the code is sent.

        Returns:
            The instance with its token, and whether this call re-authorized it.

        Raises:
            InstanceNotFoundError: No such instance.
            InstanceOutcomeUnknownError: The code was sent, the answer was ambiguous,
                and the mark did not show within `ambiguous_lookup_seconds`.
            PlatformUnavailableError: The platform failed and the code was not processed.
            AuthorizationCodeRejectedError: The provider refused the code.
        """
        current: list[Instance] = []

        async def look_up() -> Instance | None:
            instance = await self.get_instance(instance_id)
            current[:] = [instance]
            return instance if mark_tag in instance.tags else None

        async def send() -> Instance:
            tags = tags_after_reauthorization(current[0].tags, mark_tag)
            return await self._send_code(
                "PUT",
                f"/instances/{int(instance_id)}",
                body.model_copy(update={"tags": tags}),
                operation=f"re-authorize instance {instance_id}",
                not_found=_instance_not_found(instance_id),
            )

        return await self._at_most_once(
            look_up=look_up,
            send=send,
            sent_before=sent_before,
            on_send=on_send,
            done=f"re-authorized instance {instance_id}",
            tag=mark_tag,
        )

    async def _at_most_once(
        self,
        *,
        look_up: Callable[[], Awaitable[Instance | None]],
        send: Callable[[], Awaitable[Instance]],
        sent_before: bool,
        on_send: OnSend | None,
        done: str,
        tag: str,
    ) -> EnsuredInstance:
        """Look up, send at most once, and after an ambiguous answer look up with a bound.

        The one implementation behind `ensure_instance` and `ensure_reauthorized`.
        Transport retries stay in `_call`; this adds only the bounded look-up.
        """
        found = await look_up()
        if found is not None:
            return EnsuredInstance(found, created=False)
        if sent_before:
            why = "an earlier attempt of this run already sent its single-use code"
        else:
            if on_send is not None:
                await on_send()
            try:
                return EnsuredInstance(await send(), created=True)
            except _AmbiguousAnswer as answer:
                why = f"the answer to the request was lost ({answer.what})"
        for delay in look_up_delays(self.ambiguous_lookup_seconds):
            await self._sleep(delay)
            try:
                found = await look_up()
            except PlatformUnavailableError:
                continue  # still unknown; the next look-up may get through
            if found is not None:
                return EnsuredInstance(found, created=False)
        raise InstanceOutcomeUnknownError(
            f"Open Connectors may have {done}: {why}, and nothing carrying the tag '{tag}' "
            f"showed within {self.ambiguous_lookup_seconds:g} s. The instance may exist on "
            "the platform. The single-use code is never sent twice; a Retry of this same run "
            "(the Retry button of the flow run in the Prefect UI, or the API) looks it up "
            "again and adopts it.",
            look_up_seconds=self.ambiguous_lookup_seconds,
        )

    async def _send_code(
        self,
        method: str,
        path: str,
        body: InstanceBody,
        *,
        operation: str,
        not_found: Callable[[httpx.Response, _ErrorBody], ApiError],
    ) -> Instance:
        """Send a body carrying a single-use code; raise `_AmbiguousAnswer` when in doubt."""
        response = await self._call(
            method,
            path,
            operation=operation,
            json=body.to_body(),
            idempotent=False,
            at_most_once=True,
            not_found=not_found,
        )
        return _parse(Instance, response, f"the request to {operation}")

    async def _find_tagged(self, tag: str) -> Instance | None:
        """The one instance carrying exactly `tag`, with its token; None if none does.

        The list filter is only a hint: a platform may ignore it, so each listed
        instance's own tags decide.

        Raises:
            DuplicateInstancesError: Two or more instances carry the tag.
        """
        listed = await self.find_instances(tags=[tag])
        ids = sorted({instance.id for instance in listed if tag in instance.tags})
        if len(ids) > 1:
            raise DuplicateInstancesError(
                f"{len(ids)} instances carry the tag '{tag}' (ids "
                f"{', '.join(str(i) for i in ids)}), which only one instance may carry, so "
                "none is adopted. Keep the one to use, delete the others in Open Connectors "
                "(DELETE /instances/{id}), then retry this run.",
                tag=tag,
                instance_ids=ids,
            )
        if not ids:
            return None
        return await self.get_instance(ids[0])

    async def find_instances(self, *, tags: list[str] | None = None) -> list[Instance]:
        """List instances, optionally only those carrying every tag in `tags`.

        The platform applies the filter; callers that rely on it check each
        instance's `tags` too.
        """
        params = [("tags[]", tag) for tag in tags or []]
        response = await self._call(
            "GET", "/instances", operation="list instances", params=params or None
        )
        return _parse(_INSTANCE_LIST, response, "the list of instances")

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
        return _parse(Instance, response, f"instance {instance_id}")

    async def reauthorize_instance(self, instance_id: int, body: InstanceBody) -> Instance:
        """Re-authorize an instance with a new code: `PUT /instances/{id}`; the id is kept.

        Sent once, tags as given: prefer `ensure_reauthorized`, which survives a
        lost answer and keeps the instance's tags.

        Raises:
            InstanceNotFoundError: No such instance.
            AuthorizationCodeRejectedError: The code expired, was used, or is not ours.
        """
        response = await self._call(
            "PUT",
            f"/instances/{int(instance_id)}",
            operation=f"re-authorize instance {instance_id}",
            json=body.to_body(),
            idempotent=False,
            not_found=_instance_not_found(instance_id),
        )
        return _parse(Instance, response, f"the re-authorization of instance {instance_id}")

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
        segments = resource.strip("/").split("/")
        path = f"/hubs/{_segment(hub)}/{'/'.join(_segment(part) for part in segments)}"
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
        at_most_once: bool = False,
    ) -> httpx.Response:
        """Send a request with the retry policy, then turn an error answer into an exception.

        With `at_most_once` (a request carrying a single-use code), an answer that
        leaves it unknown whether the platform processed the request raises
        `_AmbiguousAnswer` instead, for the caller to look the outcome up.
        """
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
                if at_most_once and policy.is_ambiguous_error(exc):
                    raise _AmbiguousAnswer(type(exc).__name__) from None
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
                header = response.headers.get("Retry-After")
                await response.aclose()  # first: nothing below may leave it open
                await self._sleep(policy.delay(attempt, parse_retry_after(header)))
                continue
            if at_most_once and response.status_code in AMBIGUOUS_STATUSES:
                await response.aclose()
                request_id = _ErrorBody.parse(response).request_id  # the body is read already
                raise _AmbiguousAnswer(
                    f"HTTP {response.status_code}"
                    + (f", request {request_id}" if request_id else "")
                )
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
            # The platform answers 403 for a disabled instance and for a resource the
            # provider forbids: only its own words tell which.
            if not body.provider_message and "disabled" in (body.message or "").lower():
                raise InstanceDisabledError(
                    f"The instance is disabled in Open Connectors ({operation}). Enable it in "
                    "Open Connectors or re-authorize it",
                    **details,
                )
            words = body.provider_error()[1] or body.provider_message or body.message or "no reason"
            raise ProviderForbiddenError(
                f"The provider forbids this resource to the instance's account while trying "
                f"to {operation} ({words}). The instance is not reported disabled: check the "
                "account's permissions and plan with the provider, or read another resource",
                **details,
            )
        if status == 404 and not_found is not None:
            raise not_found(response, body)
        if body.provider_message:
            error, description = body.provider_error()
            words = (description or body.provider_message).lower()
            if error == "invalid_request" and "redirect_uri" in words:
                raise OAuthAppRejectedError(
                    f"The provider refused the callback URL ({description or error}): the OAuth "
                    "app block's callback_url must be exactly a redirect URI registered with the "
                    "provider app, the same one the consent link used. Fix callback_url or the "
                    "app's registration, then authorize again",
                    **details,
                )
            if error == "invalid_grant" and "unable to authenticate" in words:
                # Keap's answer to a code exchange with an unknown client or wrong secret.
                raise OAuthAppRejectedError(
                    f"The provider did not recognise the OAuth app ({description or error}). "
                    "Check api_key and api_secret in the OAuth app block against the app "
                    "registered with the provider",
                    **details,
                )
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
            for error in (
                "invalid_grant",
                "invalid_client",
                "unauthorized_client",
                "invalid_request",
            ):
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
        # The platform's own words come first: they name what it looked for.
        said = f" The platform says: “{body.message}”." if body.message else ""
        return ConnectorNotFoundError(
            f"Open Connectors has no connector with key '{element_key}'.{said} Check "
            "element_key (for example 'infusionsofterp') and that the connector exists in "
            "your account",
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


def _parse(model: type[_Model] | TypeAdapter[Any], response: httpx.Response, what: str) -> Any:
    """Validate a platform answer; a malformed one raises `ApiError` naming fields only.

    Pydantic's own message quotes the offending input, which may hold a token or
    a secret; here only field paths and error types reach the message.
    """
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(
            f"Open Connectors answered {what} with something that is not JSON",
            status_code=response.status_code,
        ) from None
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data)
        return model.model_validate(data)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        fields = "; ".join(
            f"{'.'.join(str(part)[:40] for part in problem['loc']) or '(answer)'}: "
            f"{problem['type']}"
            for problem in problems[:5]
        )
        raise ApiError(
            f"Open Connectors answered {what} with an unexpected shape ({fields})",
            status_code=response.status_code,
        ) from None


def _segment(value: str) -> str:
    """Quote one path segment so that user input cannot change the path.

    Raises:
        ConfigurationError: The segment is empty, `.` or `..` (a client would
            resolve them and reach another path).
    """
    text = str(value)
    if text in ("", ".", ".."):
        raise ConfigurationError(
            f"{text!r} cannot be part of an Open Connectors path: use a connector key, hub "
            "or resource name (for example 'infusionsofterp', 'erp', 'contacts')."
        )
    return quote(text, safe="")


def _with_tag(tags: list[str], tag: str) -> list[str]:
    return tags if tag in tags else [*tags, tag]
