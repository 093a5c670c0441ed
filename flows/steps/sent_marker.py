"""A durable note, on the flow run itself, that the run sent its single-use code.

After an ambiguous answer the platform may have used the code, and the provider
refuses a code twice. The client never resends it within one attempt; this note
carries that knowledge across attempts: a Retry of the run (a new process, maybe on
another machine) reads it, skips the consent step and only looks the instance up
(`sent_before=True`), so the Retry adopts the instance instead of sending again.

It is a flow run input of the run: kept on the Prefect server (every worker sees
it), deleted with the run, holding no secret (the tag and the time only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.input import acreate_flow_run_input, adelete_flow_run_input, aread_flow_run_input

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

    async def exists(self) -> bool:
        """Whether an earlier attempt of the run sent its code."""
        return await aread_flow_run_input(self.key, flow_run_id=self.flow_run_id) is not None

    async def record(self, tag: str) -> None:
        """Note that the code is about to be sent (kept when it already exists)."""
        try:
            await acreate_flow_run_input(
                key=self.key,
                value={"tag": tag, "at": datetime.now(UTC).isoformat()},
                flow_run_id=self.flow_run_id,
            )
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 409:  # 409: noted already, by this run
                raise

    async def clear(self) -> None:
        """Forget the note: the code was certainly not processed, sending it again is safe."""
        try:
            await adelete_flow_run_input(self.key, flow_run_id=self.flow_run_id)
        except ObjectNotFound:
            pass
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise


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
    sent_before = await marker.exists()
    recorded = False

    async def on_send() -> None:
        nonlocal recorded
        await marker.record(tag)
        recorded = True

    try:
        return await ensure(sent_before, on_send)
    except (PlatformUnavailableError, AuthorizationCodeRejectedError, OAuthAppRejectedError):
        if recorded:
            await marker.clear()
        raise
