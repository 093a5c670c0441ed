"""Who is running: the current flow run, and the tags that tie platform instances to it.

The run's id is the identity behind every "exactly once" of the flows: the instance
an authorization creates carries `prefect-flow-run-<id>`, a re-authorization marks
its instance with `prefect-reauthorized-by-<id>` (both from `open_connectors.tags`,
where the prefixes are reserved), and the state of the consent link is signed over it.
"""

from __future__ import annotations

from uuid import UUID

from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext

from open_connectors.tags import (
    REAUTHORIZATION_TAG_PREFIX,
    RUN_TAG_PREFIX,
    reauthorization_tag,
    run_tag,
)

__all__ = [
    "REAUTHORIZATION_TAG_PREFIX",
    "RUN_TAG_PREFIX",
    "AuthorizationPending",
    "current_flow_run",
    "current_flow_run_id",
    "reauthorization_tag",
    "run_tag",
]


class AuthorizationPending(Exception):
    """The run is suspending; Prefect turns this exit into the suspension."""


def current_flow_run() -> FlowRun:
    """The flow run this code runs in.

    Raises:
        RuntimeError: Called outside a flow run (these steps need their flow run).
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("This step runs only inside a flow run of this project.")
    return context.flow_run


def current_flow_run_id() -> UUID:
    """The id of the flow run this code runs in."""
    return current_flow_run().id
