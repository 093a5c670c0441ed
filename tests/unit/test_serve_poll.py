"""The serving process looks for new and resumed runs every 2 s, and bounds its runs."""

from __future__ import annotations

import pytest

from deployments.serve import DEFAULT_POLL_SECONDS, default_limit, main, poll_seconds


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

    def fake_serve(specs: list[object], **options: object) -> None:
        seen.update(options, count=len(specs))

    monkeypatch.setattr("deployments.serve.serve", fake_serve)
    monkeypatch.setattr("deployments.serve.load_specs", lambda: ["a", "b"])
    monkeypatch.delenv("PREFECT_RUNNER_POLL_FREQUENCY", raising=False)
    monkeypatch.delenv("OC_HOT_WAIT_LIMIT", raising=False)
    main([])
    assert seen == {"limit": default_limit(), "query_seconds": DEFAULT_POLL_SECONDS, "count": 2}
    main(["--poll-seconds", "0.5", "--limit", "3"])
    assert seen["query_seconds"] == 0.5 and seen["limit"] == 3
    main(["--limit", "0"])
    assert seen["limit"] is None


def test_runs_are_bounded_by_default_to_the_hot_waits_and_a_few_per_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Unbounded, 200 answers at once started 200 interpreters on two cores.
    assert default_limit(hot_waits=4, cores=2) == 8
    monkeypatch.setenv("OC_HOT_WAIT_LIMIT", "10")
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert default_limit() == 18
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert default_limit() == 12
