"""The run input a paused authorization waits for, and the words shown above its form."""

from __future__ import annotations

import re
from datetime import datetime

from prefect.input import RunInput
from pydantic import BaseModel, Field


class AuthorizationAnswer(RunInput):
    """The OAuth 2.0 redirect's parameters, as typed into the Prefect UI or sent by a callback.

    Either `code` (with `state`) for an approval, or `error` (with
    `error_description`) for a refusal (RFC 6749 §4.1.2). `code` also accepts the
    whole redirect address, whose parameters then fill the other fields. Every
    field is optional; an empty string means "not given" (plain `str` fields render
    as simple text boxes in the Prefect UI, where `str | None` would need a type
    switch first).
    """

    code: str = Field(
        default="",
        title="Code",
        description="The authorization code, or paste the whole address you were redirected to.",
    )
    state: str = Field(
        default="",
        title="State",
        description="The state from the redirect; optional when the code field has the address.",
    )
    error: str = Field(
        default="",
        title="Error",
        description="Only to refuse: an OAuth error such as access_denied.",
    )
    error_description: str = Field(
        default="", title="Error description", description="Optional words about the refusal."
    )

    def is_empty(self) -> bool:
        """Whether nothing was answered (resumed without input, or already consumed)."""
        return not any((self.code, self.state, self.error, self.error_description))


class ConsentLink(BaseModel):
    """The consent link of one authorization and the state it carries (no secret inside).

    Attributes:
        url: The provider's consent URL.
        state: The state sent in the URL, expected back in the answer.
        instance_name: The instance the consent is for.
        connector_name: A human name of the connector.
        element_key: The connector key (empty in links cached before it was recorded).
        instance_block: The instance's block (empty in links cached before it was recorded).
    """

    url: str
    state: str
    instance_name: str
    connector_name: str
    element_key: str = ""
    instance_block: str = ""


# Characters that Markdown (or the HTML it may carry) gives a meaning to.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_HTML_SPECIAL = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def markdown_text(value: str) -> str:
    """`value` as literal text inside Markdown: names from the platform or a person cannot
    add links, images, emphasis or HTML to the form or an artifact."""
    flat = " ".join(value.split())
    escaped = "".join(_HTML_SPECIAL.get(char, char) for char in flat)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escaped)


def consent_description(
    consent: ConsentLink, *, expires_at: datetime, previous_problem: str | None = None
) -> str:
    """The Markdown shown above the resume form: the link and what to do with it.

    Names are escaped (a re-authorized instance's name comes from the platform); the
    URL was checked by `check_consent_url` and holds no character that could end the
    Markdown link.
    """
    connector = markdown_text(consent.connector_name)
    lines = [
        f"### Authorize {connector} for the instance “{markdown_text(consent.instance_name)}”",
        "",
    ]
    if previous_problem:
        lines += [
            f"> **The previous answer could not be used:** {markdown_text(previous_problem)}",
            "",
        ]
    lines += [
        f"1. Open the consent link: **[Authorize {connector}](<{consent.url}>)**, "
        "sign in to the account and allow access.",
        "2. The provider then sends you back to the callback page. If this run does not "
        "continue by itself, copy the **whole address** of that page (it carries the code and "
        "this run's state) into **Code** below and submit.",
        "",
        "To refuse, click *Deny* on the consent page (or type `access_denied` into **Error**).",
        "",
        f"This request expires at **{expires_at:%Y-%m-%d %H:%M} UTC**; after that, start a new "
        "run.",
    ]
    return "\n".join(lines)
