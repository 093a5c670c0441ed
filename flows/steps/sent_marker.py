"""A durable note, on the flow run itself, that the run sent its single-use code.

After an ambiguous answer the platform may have used the code, and the provider
refuses a code twice. The client never resends it within one attempt; this note
carries that knowledge across attempts: a Retry of the run (a new process, maybe on
another machine) reads it, skips the consent step and only looks the instance up
(`sent_before=True`), so the Retry adopts the instance instead of sending again.

It is a flow run input of the run: kept on the Prefect server (every worker sees
it), deleted with the run, holding no secret (the tag and the time only). Its reads
and writes go through `blocks.prefect_client`: a busy database's refusal of the note
written just before the code leaves is asked again within a second, not after 2 s.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from blocks.prefect_client import prefect_client
from open_connectors import (
    AuthorizationCodeRejectedError,
    EnsuredInstance,
    OAuthAppRejectedError,
    PlatformUnavailableError,
)

KEY_PREFIX = "open-connectors-code-sent-"

Purpose = Literal["creation", "reauthorization"]


@dataclass(frozen=True)
class CodeSentMarker:
    """The note that one run sent its code, for one purpose.

    Attributes:
        flow_run_id: The run.
        purpose: `creation` (POST /instances) or `reauthorization` (PUT /instances/{id}).
    """

    flow_run_id: UUID
    purpose: Purpose

    @property
    def key(self) -> str:
        """The run input key of the note."""
        return f"{KEY_PREFIX}{self.purpose}"

    async def exists(self, client: PrefectClient | None = None) -> bool:
        """Whether an earlier attempt of the run sent its code."""
        async with _client(client) as prefect:
            try:
                await prefect.read_flow_run_input(self.flow_run_id, self.key)
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
                return False
        return True

    async def record(self, tag: str, client: PrefectClient | None = None) -> None:
        """Note that the code is about to be sent (kept when it already exists)."""
        note = {"tag": tag, "at": datetime.now(UTC).isoformat()}
        async with _client(client) as prefect:
            try:
                await prefect.create_flow_run_input(self.flow_run_id, self.key, json.dumps(note))
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 409:  # 409: noted already, by this run
                    raise

    async def clear(self, client: PrefectClient | None = None) -> None:
        """Forget the note: the code was certainly not processed, sending it again is safe."""
        async with _client(client) as prefect:
            try:
                await prefect.delete_flow_run_input(self.flow_run_id, self.key)
            except ObjectNotFound:
                pass
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise


@contextlib.asynccontextmanager
async def _client(given: PrefectClient | None) -> AsyncIterator[PrefectClient]:
    """The client given, or one of `prefect_client()` for this call."""
    if given is not None:
        yield given
        return
    async with prefect_client() as client:
        yield client


Ensure = Callable[[bool, Callable[[], Awaitable[None]]], Awaitable[EnsuredInstance]]


async def send_at_most_once(marker: CodeSentMarker, tag: str, ensure: Ensure) -> EnsuredInstance:
    """Run `ensure(sent_before, on_send)` with the run's note kept right.

    The note is written right before the code leaves (`on_send`), kept when the
    outcome is unknown (or anything unexpected happened), and removed only when the
    answer proves that the code was not used: the platform was unavailable before
    processing it, or the provider refused the code or the app. Then a retry may
    send again (or ask for a new code).

    Raises:
        Whatever `ensure` raises.
    """
    async with prefect_client() as client:
        sent_before = await marker.exists(client)
        recorded = False

        async def on_send() -> None:
            nonlocal recorded
            await marker.record(tag, client)
            recorded = True

        try:
            return await ensure(sent_before, on_send)
        except (PlatformUnavailableError, AuthorizationCodeRejectedError, OAuthAppRejectedError):
            if recorded:
                await marker.clear(client)
            raise
