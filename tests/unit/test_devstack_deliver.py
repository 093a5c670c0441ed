"""The tooling's browser at the callback receiver reloads while the answer is still passed on."""

from __future__ import annotations

import httpx

from tooling.devstack.consent import deliver

WORKING = '<main data-outcome="working">Still working</main>'


def _receiver(pages: list[httpx.Response]) -> tuple[httpx.AsyncClient, list[int]]:
    served: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        served.append(1)
        return pages.pop(0) if len(pages) > 1 else pages[0]

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), served


async def test_it_reloads_while_the_page_says_still_working() -> None:
    working = httpx.Response(503, text=WORKING, headers={"Retry-After": "0"})
    client, served = _receiver([working, working, httpx.Response(200, text="authorized")])
    async with client:
        page = await deliver("http://receiver.test/oauth/callback", client=client)
    assert page.status_code == 200 and len(served) == 3


async def test_it_reloads_a_busy_page_too() -> None:
    busy = httpx.Response(429, text='<main data-outcome="busy">', headers={"Retry-After": "0"})
    client, served = _receiver([busy, httpx.Response(200, text="authorized")])
    async with client:
        page = await deliver("http://receiver.test/oauth/callback", client=client)
    assert page.status_code == 200 and len(served) == 2


async def test_any_other_page_is_returned_at_once() -> None:
    not_ready = httpx.Response(503, text='<main data-outcome="not-ready">', headers={})
    client, served = _receiver([not_ready])
    async with client:
        page = await deliver("http://receiver.test/oauth/callback", client=client)
    assert page.status_code == 503 and len(served) == 1


async def test_reloads_are_bounded() -> None:
    working = httpx.Response(503, text=WORKING, headers={"Retry-After": "0"})
    client, served = _receiver([working])
    async with client:
        page = await deliver("http://receiver.test/oauth/callback", client=client, max_reloads=3)
    assert page.status_code == 503 and len(served) == 4
