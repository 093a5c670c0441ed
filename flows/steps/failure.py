"""What the authorization flows do when they fail: announce it, and which failures to retry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.client.schemas.objects import FlowRun, State

from flows.steps.events import emit_authorization_failed
from flows.steps.parameters import block_name_for
from open_connectors import InstanceTokenNotSavedError, PlatformUnavailableError
from open_connectors.connectors import key_of_label

FlowFailureHook = Callable[[Any, FlowRun, State], None]


def announce_failure(
    *, instance_name_parameter: str, element_key_parameter: str | None, default_reason: str
) -> FlowFailureHook:
    """An `on_failure` hook emitting `open-connectors.instance.failed` for a failed run.

    Args:
        instance_name_parameter: The flow parameter naming the instance (or its block).
        element_key_parameter: The flow parameter holding the connector key, if any.
        default_reason: The reason when the failed state carries no message.
    """

    def hook(flow: Any, flow_run: FlowRun, state: State) -> None:
        parameters = flow_run.parameters or {}
        # A block picked in the run form is stored as a reference, not a name.
        name = _text(parameters.get(instance_name_parameter))
        block = _text(parameters.get("instance_block")) or (block_name_for(name) if name else None)
        emit_authorization_failed(
            flow_run_id=str(flow_run.id),
            instance_name=name,
            element_key=key_of_label(
                str(parameters.get(element_key_parameter, "") if element_key_parameter else "")
            ),
            block_name=block,
            reason=state.message or default_reason,
        )

    return hook


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def platform_was_unavailable(task: Any, task_run: Any, state: State) -> bool:
    """A task retry condition: retry only when the platform (or Prefect's store of the
    token) was briefly unavailable. The retried step looks its instance up first."""
    return isinstance(state.data, PlatformUnavailableError | InstanceTokenNotSavedError)
