"""The serving process looks for new and resumed runs every 2 s unless told otherwise."""

from __future__ import annotations

import pytest

from deployments.serve import DEFAULT_POLL_SECONDS, main, poll_seconds


def test_the_default_is_shorter_than_prefects_ten_seconds() -> None:
    assert poll_seconds({}) == DEFAULT_POLL_SECONDS < 10


def test_prefects_setting_wins_when_set() -> None:
    assert poll_seconds({"PREFECT_RUNNER_POLL_FREQUENCY": "7"}) == 7.0
    assert poll_seconds({"PREFECT_RUNNER_POLL_FREQUENCY": " "}) == DEFAULT_POLL_SECONDS


def test_a_setting_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(SystemExit, match="number of seconds"):
        poll_seconds({"PREFECT_RUNNER_POLL_FREQUENCY": "often"})


def test_serve_gets_the_poll_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_serve(*deployments: object, **options: object) -> None:
        seen.update(options, count=len(deployments))

    monkeypatch.setattr("deployments.serve.serve", fake_serve)
    monkeypatch.setattr("deployments.serve.build_deployments", lambda: ["a", "b"])
    monkeypatch.delenv("PREFECT_RUNNER_POLL_FREQUENCY", raising=False)
    main([])
    assert seen == {"limit": None, "query_seconds": DEFAULT_POLL_SECONDS, "count": 2}
    main(["--poll-seconds", "0.5", "--limit", "3"])
    assert seen["query_seconds"] == 0.5 and seen["limit"] == 3
