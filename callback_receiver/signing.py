"""The receiver's state signer: loaded from the state key block, cached, reloaded on rotation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from uuid import UUID

from open_connectors.authorization import StateSigner, parse_state
from open_connectors.errors import StateMismatchError, UnknownStateKeyError

SignerLoader = Callable[[], Awaitable[StateSigner]]


class SignerSource:
    """Verifies states with a cached `StateSigner`, reloading it when a key is new to it.

    A state naming an unknown key id is either signed with a key rotated in since
    the last load, or with one rotated out (or forged): the signer is reloaded, at
    most once every `min_reload_seconds`, so a rotation is picked up quickly and a
    stream of forged key ids costs at most one block read per interval. The callbacks
    that meet a new key while one of them reloads verify with that reload's signer.

    Args:
        load: Loads the current signer (e.g. from the `StateSigningKey` block).
        min_reload_seconds: The shortest time between two reloads.
        clock: A monotonic clock (tests).
    """

    def __init__(
        self,
        load: SignerLoader,
        *,
        min_reload_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._min_reload_seconds = min_reload_seconds
        self._clock = clock
        self._signer: StateSigner | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self.loads = 0

    async def signer(self) -> StateSigner:
        """The cached signer (loaded on first use)."""
        if self._signer is None:
            await self._reload(outdated=None)
        assert self._signer is not None
        return self._signer

    async def verify(self, state: str) -> tuple[UUID, StateSigner]:
        """The run a state names and the signer that verified it.

        Raises:
            UnknownStateKeyError: Signed with a key unknown even after a reload.
            StateMismatchError: Malformed, forged or altered (nothing is loaded for a
                malformed state).
        """
        if parse_state(state) is None:
            raise StateMismatchError("The state is not one this project issues.")
        signer = await self.signer()
        try:
            return signer.verify(state), signer
        except UnknownStateKeyError:
            if not await self._reload(outdated=signer):
                raise
        signer = await self.signer()
        return signer.verify(state), signer

    async def _reload(self, *, outdated: StateSigner | None) -> bool:
        """Load the signer unless another is there to try; True when one is.

        `outdated` is the signer a state did not verify with (None for the first load).
        When another request has loaded a signer since this one read `outdated` (the
        callbacks of a burst after a rotation all meet the new key at once), that one is
        tried without a read; otherwise a read happens at most once per interval.
        """
        async with self._lock:
            if self._signer is not None and self._signer is not outdated:
                return True
            if outdated is not None and (
                self._clock() - self._loaded_at < self._min_reload_seconds
            ):
                return False
            self._signer = await self._load()
            self._loaded_at = self._clock()
            self.loads += 1
            return True
