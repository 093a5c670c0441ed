"""The project's reserved instance tags: which run created an instance, which re-authorized it.

An instance created by an authorization run carries `prefect-flow-run-<run id>`; a
re-authorization adds `prefect-reauthorized-by-<run id>` (replacing older marks).
Both are looked for by exact match, never by position, so user tags must not use
these prefixes: `check_user_tags` refuses them before any network call.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from open_connectors.errors import ConfigurationError

__all__ = [
    "REAUTHORIZATION_TAG_PREFIX",
    "RESERVED_TAG_PREFIXES",
    "RUN_TAG_PREFIX",
    "check_user_tags",
    "creating_run_id",
    "reauthorization_tag",
    "run_tag",
    "tags_after_reauthorization",
]

RUN_TAG_PREFIX = "prefect-flow-run-"
REAUTHORIZATION_TAG_PREFIX = "prefect-reauthorized-by-"
RESERVED_TAG_PREFIXES = (RUN_TAG_PREFIX, REAUTHORIZATION_TAG_PREFIX)


def run_tag(run_id: str | UUID) -> str:
    """The tag that marks the instance created by one flow run."""
    return f"{RUN_TAG_PREFIX}{run_id}"


def reauthorization_tag(run_id: str | UUID) -> str:
    """The tag that marks an instance re-authorized by one flow run."""
    return f"{REAUTHORIZATION_TAG_PREFIX}{run_id}"


def check_user_tags(tags: Iterable[str]) -> list[str]:
    """Refuse user tags that use a reserved prefix; return the tags as a list.

    Compared after trimming and ignoring case, as the platform trims tags on write.

    Raises:
        ConfigurationError: A tag starts with `prefect-flow-run-` or
            `prefect-reauthorized-by-` (it would pose as a run's identity).
    """
    checked = list(tags)
    for tag in checked:
        lowered = str(tag).strip().lower()
        for prefix in RESERVED_TAG_PREFIXES:
            if lowered.startswith(prefix):
                raise ConfigurationError(
                    f"The tag {str(tag)[:80]!r} starts with '{prefix}', which this project "
                    "reserves to mark the run that created or re-authorized an instance. "
                    "Choose another tag."
                )
    return checked


def creating_run_id(tags: Iterable[str]) -> UUID | None:
    """The id of the run that created an instance, from its one `prefect-flow-run-` tag.

    Returns:
        The run id; None when no such tag is there, when it is not a canonical UUID, or when
        several different ones are (the instance's origin is then ambiguous).
    """
    found = {tag.removeprefix(RUN_TAG_PREFIX) for tag in tags if tag.startswith(RUN_TAG_PREFIX)}
    if len(found) != 1:
        return None
    value = found.pop()
    try:
        parsed = UUID(value)
    except ValueError:
        return None
    # Exact: the canonical form only (UUID() also takes braces, "urn:uuid:", no dashes).
    return parsed if str(parsed) == value else None


def tags_after_reauthorization(current: Iterable[str], mark: str) -> list[str]:
    """The instance's tags with `mark` in place of earlier re-authorization marks.

    `PUT /instances/{id}` replaces tags wholesale, so every other tag (the person's,
    and the creating run's `prefect-flow-run-<id>`) is sent back.
    """
    kept = [tag for tag in current if not tag.startswith(REAUTHORIZATION_TAG_PREFIX)]
    return [*kept, mark]
