"""A person at the consent page, over plain HTTP: open the link, press Allow or Deny.

Returns the address the provider redirects to, without following it, so the caller
decides where the answer goes (the Prefect resume API, or the callback receiver).
"""

from __future__ import annotations

import asyncio
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urljoin

import httpx

from tooling.devstack.processes import StackError

Decision = Literal["approve", "deny"]


class _ConsentForm(HTMLParser):
    """Collects the consent form's action and hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: dict[str, str] = {}
        self.decisions: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
            self.method = values.get("method", "get").lower()
        elif tag == "input" and values.get("type") == "hidden" and "name" in values:
            self.fields[values["name"]] = values.get("value", "")
        elif tag == "button" and values.get("name") == "decision":
            self.decisions.add(values.get("value", ""))


async def decide(
    consent_url: str, decision: Decision = "approve", *, client: httpx.AsyncClient | None = None
) -> str:
    """Open the consent page, submit `decision`, and return the redirect address.

    Raises:
        StackError: The page has no consent form, or the provider did not redirect.
    """
    owned = client is None
    http = client or httpx.AsyncClient(timeout=15)
    try:
        page = await http.get(consent_url)
        if page.status_code != 200:
            raise StackError(f"The consent page answered {page.status_code}: {page.text[:300]}")
        form = _ConsentForm()
        form.feed(page.text)
        if form.action is None or decision not in form.decisions:
            raise StackError("The consent page has no form with that decision.")
        answer = await http.request(
            form.method.upper(),
            urljoin(str(page.url), form.action),
            data={**form.fields, "decision": decision},
            follow_redirects=False,
        )
        location = answer.headers.get("location")
        if answer.status_code not in (302, 303) or not location:
            raise StackError(
                f"The provider did not redirect after the decision ({answer.status_code})."
            )
        return urljoin(str(answer.url), location)
    finally:
        if owned:
            await http.aclose()


# The receiver's page while it still passes an answer on to a slow Prefect (503).
_WORKING = 'data-outcome="working"'


async def deliver(
    redirect: str, *, client: httpx.AsyncClient, max_reloads: int = 60
) -> httpx.Response:
    """Open the redirect at the callback receiver as a person's browser would.

    While the receiver's page says the answer is still being passed on, or that it is
    busy (429), it is reloaded after the page's `Retry-After` (10 s at most),
    `max_reloads` times at most; the last page is returned whatever it says.
    """
    page = await client.get(redirect)
    for _ in range(max_reloads):
        working = page.status_code == 503 and _WORKING in page.text
        if not working and page.status_code != 429:
            break
        await asyncio.sleep(min(float(page.headers.get("retry-after", "5")), 10.0))
        page = await client.get(redirect)
    return page
