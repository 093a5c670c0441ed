"""Callbacks being answered: each is worked on once, and the person's page waits a bounded time.

Under load Prefect can take minutes to answer one callback (each request of its
client may wait 60 s and be retried on 503 and 429, as SQLite gives under a burst of
answers), and the person's browser should not wait that long. So each callback's
work runs as a task of its own; the page waits for it at most `answer_within`
seconds, then says that the answer is still being passed on (reload in a moment).
The work itself is not cut short while the receiver runs: a resume stopped midway
would leave an answer that Prefect may or may not have taken, so the rules on the
used-answer marker stay exactly as they are. At shutdown the work going on gets a
bounded time to end; what is still going then is abandoned and logged (a reload may
then read "already used" for an answer that was not delivered).

A reload of the same callback (the same state and the same code or error) joins the
work already going on instead of starting a second one. When the work outlived its
page, its result answers reloads for `remember_seconds` after it ended (a reload must
not read "already used" for the answer it delivered itself); a result that says "try
again" is not kept, so a reload then tries again. A callback answered within its
page's wait is not remembered: replayed later, it is told "already used" as before.
Tasks in progress count against the callbacks-in-progress bound until they end,
whether or not a page still waits for them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from callback_receiver.limits import InProgressLimit
from callback_receiver.outcomes import CallbackResult, Outcome
from callback_receiver.query import Callback

logger = logging.getLogger("callback_receiver")
# Outcomes a reload should not be given again: it may succeed now.
_TRY_AGAIN = {Outcome.NOT_READY, Outcome.BUSY, Outcome.WORKING}
# How long a reload waits for a page when the answer is still being passed on.
RELOAD_AFTER_SECONDS = 5.0


def callback_key(callback: Callback) -> str:
    """What identifies a callback among those in progress (a digest: no code is kept)."""
    value = f"{callback.state}\0{callback.used_value()}".encode()
    return hashlib.sha256(value).hexdigest()


class InFlightCallbacks:
    """Runs each callback's work once, and bounds how long a page waits for it.

    Args:
        answer_within: Seconds a page waits for the work before it says "still working".
        limit: The bound on callbacks in progress (a new piece of work takes a place).
        remember_seconds: How long a finished work's result answers reloads.
        max_remembered: Finished results kept at most (the oldest are forgotten first).
        clock: A monotonic clock (tests).
    """

    def __init__(
        self,
        *,
        answer_within: float,
        limit: InProgressLimit,
        remember_seconds: float = 300.0,
        max_remembered: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._within = answer_within
        self._limit = limit
        self._remember = remember_seconds
        self._max_remembered = max_remembered
        self._clock = clock
        self._running: dict[str, asyncio.Task[CallbackResult]] = {}
        # Work whose page was told "still working": its result is kept for the reloads.
        self._outlived: set[str] = set()
        self._finished: OrderedDict[str, tuple[float, CallbackResult]] = OrderedDict()

    @property
    def running(self) -> int:
        """Pieces of work going on now."""
        return len(self._running)

    async def answer(
        self, key: str, work: Callable[[], Awaitable[CallbackResult]]
    ) -> CallbackResult:
        """The result of the callback `key`: its work's, or "still working" past the bound.

        Starts `work` unless the same callback is being worked on (then joins it) or
        ended recently (then its result). Beyond the bound on callbacks in progress, a
        new piece of work is refused (busy) and nothing is started.
        """
        remembered = self._remembered(key)
        if remembered is not None:
            return remembered
        task = self._running.get(key)
        if task is None:
            if not self._limit.try_enter():
                logger.warning("Refused a callback: %d already in progress.", self._limit.limit)
                return CallbackResult(Outcome.BUSY, retry_after=1)
            task = asyncio.create_task(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._ended(key, done))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._within)
        except asyncio.CancelledError:
            # The page's request was cancelled (the server stops): its reloads get the result.
            if not task.done():
                self._outlived.add(key)
            raise
        if task in done:
            return task.result()
        logger.info("A callback is still being answered after %.0f s.", self._within)
        self._outlived.add(key)
        return CallbackResult(Outcome.WORKING, retry_after=RELOAD_AFTER_SECONDS)

    async def drain(self, timeout: float) -> int:
        """Wait at most `timeout` seconds for the work going on (at shutdown).

        Returns how many pieces of work were still going on (and are abandoned).
        """
        if not self._running:
            return 0
        _, pending = await asyncio.wait(set(self._running.values()), timeout=timeout)
        if pending:
            logger.warning(
                "Stopping with %d answer(s) still being passed on to Prefect; a reload of "
                "those may read 'already used'.",
                len(pending),
            )
        return len(pending)

    def _remembered(self, key: str) -> CallbackResult | None:
        now = self._clock()
        while self._finished:
            oldest, (ended, _) = next(iter(self._finished.items()))
            if now - ended <= self._remember and len(self._finished) <= self._max_remembered:
                break
            del self._finished[oldest]
        entry = self._finished.get(key)
        return entry[1] if entry is not None else None

    def _ended(self, key: str, task: asyncio.Task[CallbackResult]) -> None:
        self._running.pop(key, None)
        self._limit.leave()
        outlived = key in self._outlived
        self._outlived.discard(key)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # Whoever waited got the error; a page no longer waiting gets it logged.
            logger.error("A callback's work failed: %s.", type(error).__name__)
            return
        result = task.result()
        if outlived and result.outcome not in _TRY_AGAIN:
            self._finished[key] = (self._clock(), result)
            self._finished.move_to_end(key)
