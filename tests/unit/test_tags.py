"""The project's reserved tags: refused as user tags, parsed by exact match."""

from __future__ import annotations

from uuid import UUID

import pytest

from open_connectors import ConfigurationError
from open_connectors.tags import (
    check_user_tags,
    creating_run_id,
    reauthorization_tag,
    run_tag,
    tags_after_reauthorization,
)

RUN = UUID("5f0c1d2e-0000-4000-8000-000000000001")
OTHER = UUID("5f0c1d2e-0000-4000-8000-000000000002")


def test_the_tags_of_a_run() -> None:
    assert run_tag(RUN) == f"prefect-flow-run-{RUN}"
    assert reauthorization_tag(str(RUN)) == f"prefect-reauthorized-by-{RUN}"


@pytest.mark.parametrize(
    "tag",
    [
        f"prefect-flow-run-{RUN}",
        "prefect-reauthorized-by-x",
        "  PREFECT-FLOW-RUN-anything",
        "Prefect-Reauthorized-By-",
    ],
)
def test_reserved_prefixes_are_refused(tag: str) -> None:
    with pytest.raises(ConfigurationError, match="reserves"):
        check_user_tags(["team-a", tag])


def test_other_tags_pass() -> None:
    tags = ["team-a", "prefect", "flow-run-1", "my-prefect-flow-run-1"]
    assert check_user_tags(iter(tags)) == tags


def test_the_creating_run_is_the_one_exact_tag() -> None:
    assert creating_run_id(["team", reauthorization_tag(OTHER), run_tag(RUN)]) == RUN
    assert creating_run_id([run_tag(RUN), run_tag(RUN)]) == RUN  # the same one twice


@pytest.mark.parametrize(
    "tags",
    [
        [],
        ["team"],
        [reauthorization_tag(RUN)],
        ["prefect-flow-run-not-a-uuid"],
        [f"prefect-flow-run-{{{RUN}}}"],  # braces: UUID() takes them, an exact parse does not
        [f"prefect-flow-run-{RUN.hex}"],
        [run_tag(RUN), run_tag(OTHER)],  # two runs claim it: no first match
        ["prefect-flow-run-not-a-uuid", run_tag(RUN)],
    ],
)
def test_no_creating_run_unless_exactly_one(tags: list[str]) -> None:
    assert creating_run_id(tags) is None


def test_marks_of_earlier_reauthorizations_are_replaced() -> None:
    created_by = run_tag(RUN)
    tags = tags_after_reauthorization(
        ["x", reauthorization_tag("a"), created_by], reauthorization_tag("b")
    )
    assert tags == ["x", created_by, reauthorization_tag("b")]
