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
Any other 503 (a proxy, a server that says when to come back) is left as it is.
"""

from __future__ import annotations

import weakref

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from starlette import status

# Seconds before asking again after a request's first, second and third busy refusal
# (Prefect's client adds up to 20 % jitter); after that, Prefect's own back-off.
QUICK_RETRY_SECONDS = (0.05, 0.2, 0.8)
# What Prefect's server answers when its database refused a transaction it may retry.
_BUSY_ANSWER = {"exception_message": "Service Unavailable"}
# Busy refusals so far of each request in flight (Prefect's client resends the same one).
_refusals: weakref.WeakKeyDictionary[httpx.Request, int] = weakref.WeakKeyDictionary()


def prefect_client() -> PrefectClient:
    """A Prefect client (`get_client()`, same settings) that asks again soon after a busy
    database's refusal; use it as `async with prefect_client() as client:`."""
    return get_client(httpx_settings={"event_hooks": {"response": [ask_again_soon]}})


async def ask_again_soon(response: httpx.Response) -> None:
    """An httpx response hook: a busy database's refusal gets a short `Retry-After`.

    Only for the first `QUICK_RETRY_SECONDS` refusals of a request; later ones keep
    Prefect's back-off. A request Prefect's client sends again is the same object, so
    its refusals are counted on it.
    """
    if response.status_code != status.HTTP_503_SERVICE_UNAVAILABLE:
        return
    if "Retry-After" in response.headers:
        return  # the server said when to come back
    await response.aread()
    try:
        busy = response.json() == _BUSY_ANSWER
    except ValueError:
        busy = False
    if not busy:
        return
    refusals = _refusals.get(response.request, 0)
    _refusals[response.request] = refusals + 1
    if refusals < len(QUICK_RETRY_SECONDS):
        response.headers["Retry-After"] = str(QUICK_RETRY_SECONDS[refusals])
