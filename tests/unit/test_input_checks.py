"""Checks made before any network call: connectors, configuration, names, URLs."""

from __future__ import annotations

import logging

import pytest

from open_connectors import ConfigurationError, profile_for
from open_connectors.connectors import (
    normalize_infusionsoft_server,
    prepare_configuration,
    validate_callback_url,
    validate_element_key,
    validate_instance_name,
    validate_tags,
)
from open_connectors.redaction import RedactingFilter, redact_url
from open_connectors.regions import REGIONS, normalize_base_url
from open_connectors.retry import RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    "value",
    [
        "dt123.infusionsoft.com",
        "DT123.Infusionsoft.com",
        "https://dt123.infusionsoft.com",
        "https://dt123.infusionsoft.com/",
        "  dt123.infusionsoft.com/ ",
    ],
)
def test_infusionsoft_server_forms_are_normalized(value: str) -> None:
    assert normalize_infusionsoft_server(value) == "dt123.infusionsoft.com"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "dt123",
        "http://dt123.infusionsoft.com",
        "https://dt123.infusionsoft.com/app",
        "https://dt123.infusionsoft.com:8443",
        "dt123.infusionsoft.com.evil.example",
        "evil.example/dt123.infusionsoft.com",
        "a b.infusionsoft.com",
    ],
)
def test_other_server_values_are_refused_with_an_example(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"dt123\.infusionsoft\.com"):
        normalize_infusionsoft_server(value)


def test_infusionsoft_erp_needs_its_server_and_gets_defaults() -> None:
    profile = profile_for("infusionsofterp")
    assert profile.hub == "erp"
    with pytest.raises(ConfigurationError, match=r"infusionsoft\.server"):
        prepare_configuration(profile, {})
    assert prepare_configuration(
        profile, {"infusionsoft.server": "https://dt1.infusionsoft.com"}
    ) == {
        "filter.response.nulls": "true",
        "infusionsoft.server": "dt1.infusionsoft.com",
    }


@pytest.mark.parametrize(
    "key", ["infusionsoft.private.key", "some.password", "api.token", "oauth.api.secret"]
)
def test_secrets_are_refused_as_plain_configuration(key: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        prepare_configuration(
            profile_for("infusionsofterp"),
            {"infusionsoft.server": "dt1.infusionsoft.com", key: "s3cr3t-value"},
        )
    assert "s3cr3t-value" not in str(raised.value)


def test_a_required_key_may_come_from_a_secret_block() -> None:
    profile = profile_for("infusionsofterp")
    assert prepare_configuration(profile, {}, ["infusionsoft.server"]) == {
        "filter.response.nulls": "true"
    }


@pytest.mark.parametrize("key", ["", "Infusion Soft", "x", "a" * 70, "../x", "ERP"])
def test_malformed_connector_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigurationError, match="infusionsofterp"):
        validate_element_key(key)


def test_unknown_connectors_are_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="Unknown connector 'hubspotcrm'") as raised:
        profile_for("hubspotcrm")
    assert "infusionsofterp" in str(raised.value)


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "bad\x00name", "a\u200bb", "<b>x</b>"])
def test_bad_instance_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="instance_name"):
        validate_instance_name(name)


def test_instance_names_are_trimmed_and_may_be_unicode() -> None:
    assert validate_instance_name("  Café ERP (prod)  ") == "Café ERP (prod)"


def test_tags_are_checked_and_deduplicated() -> None:
    assert validate_tags(["a", "a", " b "]) == ["a", "b"]
    with pytest.raises(ConfigurationError):
        validate_tags([""])
    with pytest.raises(ConfigurationError):
        validate_tags([str(i) for i in range(21)])


@pytest.mark.parametrize(
    "url", ["https://auth.cloudelements.io/oauth", "http://127.0.0.1:8080/cb", "http://localhost/x"]
)
def test_callback_urls_accepted(url: str) -> None:
    assert validate_callback_url(url) == url


@pytest.mark.parametrize(
    "url", ["http://example.com/cb", "ftp://x/cb", "/relative", "https://u:p@x/cb", "https://x/#f"]
)
def test_callback_urls_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="callback_url"):
        validate_callback_url(url)


def test_base_urls() -> None:
    assert normalize_base_url("sap-us2") == REGIONS["sap-us2"]
    assert (
        normalize_base_url("https://api.example.test") == "https://api.example.test/elements/api-v2"
    )
    assert normalize_base_url("http://127.0.0.1:9/elements/api-v2/") == (
        "http://127.0.0.1:9/elements/api-v2"
    )
    for bad in ("http://api.example.test", "not a url", "https://x/?secret=1"):
        with pytest.raises(ConfigurationError, match="base_url"):
            normalize_base_url(bad)


def test_urls_in_logs_lose_their_secrets() -> None:
    url = "https://h/elements/api-v2/elements/k/oauth/url?apiKey=id&apiSecret=top&state=s"
    assert redact_url(url) == (
        "https://h/elements/api-v2/elements/k/oauth/url?apiKey=id&apiSecret=***&state=s"
    )
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: GET %s", (url,), None
    )
    RedactingFilter().filter(record)
    assert "top" not in record.getMessage() and "apiSecret=***" in record.getMessage()


def test_retry_after_forms() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_grows_with_jitter_up_to_its_cap() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=4)
    for retry, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (2, 4), (2, 4)], start=1):
        assert low <= policy.delay(retry) <= high
    assert policy.delay(1, retry_after=3) == 3
    assert policy.delay(1, retry_after=1e6) == policy.max_retry_after
