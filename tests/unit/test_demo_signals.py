"""The demo stops on SIGTERM and SIGHUP exactly as on Ctrl+C, while starting and while waiting."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import pytest

from tooling.demo.__main__ import STOP_SIGNALS, stop_like_ctrl_c


@pytest.fixture
def handlers() -> Iterator[None]:
    """Put back this process's own handlers of the demo's stop signals afterwards."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda sig: sig.name)
def test_a_stop_signal_interrupts_a_blocking_step_like_ctrl_c(
    handlers: None, sig: signal.Signals
) -> None:
    # Starting the stack: the demo waits for a process with time.sleep.
    received = stop_like_ctrl_c()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(sig)
        time.sleep(10)
    assert time.monotonic() - started < 5
    assert received == [sig]


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda sig: sig.name)
def test_a_stop_signal_cancels_the_waiting_coroutine_like_ctrl_c(
    handlers: None, sig: signal.Signals
) -> None:
    # Waiting for the run: asyncio.run turns Ctrl+C into a cancellation of the coroutine,
    # so its `async with` blocks close; a stop signal must go the same way.
    received = stop_like_ctrl_c()
    unwound: list[str] = []

    async def wait_for_the_person() -> None:
        try:
            asyncio.get_running_loop().call_later(0.2, signal.raise_signal, sig)
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            unwound.append("cancelled")
            raise

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(wait_for_the_person())
    assert time.monotonic() - started < 5
    assert unwound == ["cancelled"]
    assert received == [sig]


def test_a_second_stop_signal_does_not_interrupt_the_cleanup(handlers: None) -> None:
    received = stop_like_ctrl_c()
    cleaned = False
    with pytest.raises(KeyboardInterrupt):
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            # Stopping the stack's processes: a CI runner may signal again meanwhile.
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGHUP)
            cleaned = True
    assert cleaned
    assert received == [signal.SIGTERM]
