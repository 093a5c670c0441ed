"""The consent URL is checked before anyone sees it; names are escaped in Markdown."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from pydantic import SecretStr

from flows.steps.consent import markdown_text
from open_connectors.consent_url import check_consent_url
from open_connectors.errors import UnusableConsentUrlError

SECRET = SecretStr("app-secret-value/42")
STATE = "0123abcd.k1.mac"
GOOD = f"https://accounts.infusionsoft.com/app/oauth/authorize?client_id=x&state={STATE}"


def check(url: str) -> str:
    return check_consent_url(url, state=STATE, secrets=[SECRET])


def test_a_good_url_passes_unchanged() -> None:
    assert check(GOOD) == GOOD
    assert check(GOOD.replace("https://accounts.infusionsoft.com", "http://127.0.0.1:8000"))


@pytest.mark.parametrize(
    "encoded",
    [
        SECRET.get_secret_value(),
        quote(SECRET.get_secret_value(), safe=""),
        quote(quote(SECRET.get_secret_value(), safe=""), safe=""),
        SECRET.get_secret_value().replace("/", "%2f"),
    ],
)
def test_the_secret_is_found_in_any_percent_encoding(encoded: str) -> None:
    with pytest.raises(UnusableConsentUrlError, match="contains a secret") as caught:
        check(f"{GOOD}&apiSecret={encoded}")
    assert SECRET.get_secret_value() not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        GOOD.replace("https://", "http://"),  # plain http off loopback
        GOOD.replace("https://", "javascript://"),
        GOOD.replace("https://", "https://user:pw@"),
        GOOD.replace(f"state={STATE}", "state=other"),
        GOOD.replace(f"state={STATE}", f"x={STATE}"),  # the state as a substring only
        GOOD + f"&state={STATE}",  # twice
        GOOD + ">[click](https://evil.example)",
        GOOD + " onload=x",
        "",
    ],
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(UnusableConsentUrlError):
        check(url)


def test_markdown_text_neutralizes_links_html_and_emphasis() -> None:
    text = markdown_text("ACME [x](https://evil.example) <img src=x> *b* `c`\n# h")
    assert "[x](" not in text and "<img" not in text and "*b*" not in text
    assert "\n" not in text
    assert text.startswith("ACME \\[x\\]\\(")
