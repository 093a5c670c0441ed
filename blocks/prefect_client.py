"""Prefect API clients that ask again soon when Prefect's database is busy for a moment.

Prefect's server answers 503 (`{"exception_message": "Service Unavailable"}`) when its
database refuses a transaction for a moment: on SQLite, another write landed between a
request's read and its write, and nothing was done. Prefect's client asks again only
after 2 s (then 4, 8, 16 and 32 s). On the way from a person's answer to the instance
(the receiver's resume, the run's claim of its code, a hot wait's slot and its claim of
the resumed run) that wait would be most of the authorization's time. A client made
here tells Prefect's own retry loop to ask again sooner for the first refusals of a
request (a `Retry-After`, which Prefect's client honours), then leaves the rest to its
back-off: a database that stays busy gets about the same patience, most of a minute.
Under a burst (more than `BURST_REFUSALS` busy refusals in this process within
`BURST_SECONDS`, as a receiver answering many callbacks at once meets on SQLite), asking
again within a second would only add to the load: every request then keeps Prefect's
back-off. Prefect's client also sleeps after a request's last attempt, before it gives the
refusal back (64 s with its default five retries); a busy refusal that is the last
attempt gets a `Retry-After` of 0, so the caller hears of it at once. Any other 503 (a
proxy, a server that says when to come back) is left as it is.
"""

from __future__ import annotations

import collections
import time
import weakref

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES
from starlette import status

# Seconds before asking again after a request's first, second and third busy refusal
# (Prefect's client adds up to 20 % jitter); after that, Prefect's own back-off.
QUICK_RETRY_SECONDS = (0.05, 0.2, 0.8)
# More busy refusals than this in this process within `BURST_SECONDS`: a burst.
BURST_REFUSALS = 5
BURST_SECONDS = 2.0
# What Prefect's server answers when its database refused a transaction it may retry.
_BUSY_ANSWER = {"exception_message": "Service Unavailable"}
# Busy refusals so far of each request in flight (Prefect's client resends the same one).
_refusals: weakref.WeakKeyDictionary[httpx.Request, int] = weakref.WeakKeyDictionary()
# When this process's latest busy refusals came (monotonic seconds).
_recent: collections.deque[float] = collections.deque(maxlen=BURST_REFUSALS + 1)


def prefect_client() -> PrefectClient:
    """A Prefect client (`get_client()`, same settings) that asks again soon after a busy
    database's refusal; use it as `async with prefect_client() as client:`."""
    return get_client(httpx_settings={"event_hooks": {"response": [ask_again_soon]}})


async def ask_again_soon(response: httpx.Response) -> None:
    """An httpx response hook: a busy database's refusal gets a short `Retry-After`.

    Only for the first `QUICK_RETRY_SECONDS` refusals of a request, and not during a
    burst; later ones keep Prefect's back-off, except the last attempt's (0: nothing
    follows it). A request
    Prefect's client sends again is the same object, so its refusals are counted on it
    (never more than Prefect's count of its attempts, which also counts failures of
    other kinds: so a refusal is taken for the last only when it is).
    """
    if response.status_code != status.HTTP_503_SERVICE_UNAVAILABLE:
        return
    if "Retry-After" in response.headers:
        return  # the server said when to come back
    if response.headers.get("Prefect-Maintenance") == "true":
        return  # Prefect's client asks again for as long as it lasts, uncounted
    await response.aread()
    try:
        busy = response.json() == _BUSY_ANSWER
    except ValueError:
        busy = False
    if not busy:
        return
    refusals = _refusals.get(response.request, 0) + 1
    _refusals[response.request] = refusals
    now = time.monotonic()
    _recent.append(now)
    burst = len(_recent) > BURST_REFUSALS and now - _recent[0] < BURST_SECONDS
    if refusals > PREFECT_CLIENT_MAX_RETRIES.value():
        response.headers["Retry-After"] = "0"  # the last attempt: give the refusal back now
    elif refusals <= len(QUICK_RETRY_SECONDS) and not burst:
        response.headers["Retry-After"] = str(QUICK_RETRY_SECONDS[refusals - 1])
