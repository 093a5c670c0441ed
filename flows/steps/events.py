"""Prefect events announcing an instance's fate, for triggers and automations.

Names and resources are part of the public interface:

- `open-connectors.instance.created`: resource `open-connectors.instance.<id>`,
  payload `{instance_id, instance_name, element_key, block_name, created}`.
- `open-connectors.instance.failed`: resource `open-connectors.authorization.<flow run id>`,
  payload `{instance_name, element_key, block_name, reason}`.
- `open-connectors.instance.deleted` (`flows.disconnect`): resource
  `open-connectors.instance.<id>`, payload `{instance_id, instance_name, element_key,
  block_name, already_deleted}`.
- `open-connectors.instance.reauthorized` (`flows.reauthorize`), and
  `open-connectors.instance.broken` / `.recovered` (`flows.verify`): resource
  `open-connectors.instance.<id>`, payload `{instance_id, instance_name, element_key,
  block_name, ...}` with each flow's details.

- `open-connectors.consent.requested` (`flows.steps.waiting`, once per prompt, when a run
  starts waiting) and `open-connectors.consent.expired` (`flows.verify`, once per run whose
  wait timed out): resource `open-connectors.authorization.<flow run id>`, related the
  flow run (and the saved-instance block when known), payload `{flow_run_id, instance_name,
  connector, element_key, block_name, link, expires_at, flow_run_url}`. The link holds the
  OAuth app's public client id and the run's state, never a secret.

Events never carry a secret, token or code: only ids, names and messages built by
this project.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect.events import emit_event

INSTANCE_CREATED = "open-connectors.instance.created"
INSTANCE_FAILED = "open-connectors.instance.failed"
INSTANCE_REAUTHORIZED = "open-connectors.instance.reauthorized"
INSTANCE_DELETED = "open-connectors.instance.deleted"
INSTANCE_BROKEN = "open-connectors.instance.broken"
INSTANCE_RECOVERED = "open-connectors.instance.recovered"
CONSENT_REQUESTED = "open-connectors.consent.requested"
CONSENT_EXPIRED = "open-connectors.consent.expired"
MAX_REASON_LENGTH = 1000


def instance_resource(instance_id: int, instance_name: str, element_key: str) -> dict[str, str]:
    """The Prefect resource that names an Open Connectors instance."""
    return {
        "prefect.resource.id": f"open-connectors.instance.{instance_id}",
        "prefect.resource.name": instance_name,
        "open-connectors.instance-id": str(instance_id),
        "open-connectors.element-key": element_key,
    }


def emit_instance_event(
    event: str,
    *,
    instance_id: int,
    instance_name: str,
    element_key: str,
    block_name: str,
    payload: dict[str, Any] | None = None,
) -> None:
    """Emit an event about an instance (created, broken, recovered)."""
    emit_event(
        event=event,
        resource=instance_resource(instance_id, instance_name, element_key),
        related=[block_resource(block_name)],
        payload={
            "instance_id": instance_id,
            "instance_name": instance_name,
            "element_key": element_key,
            "block_name": block_name,
            **(payload or {}),
        },
    )


def emit_authorization_failed(
    *,
    flow_run_id: str,
    instance_name: str,
    element_key: str,
    block_name: str | None,
    reason: str,
) -> None:
    """Emit `open-connectors.instance.failed` for an authorization that ended without instance."""
    emit_event(
        event=INSTANCE_FAILED,
        resource={
            "prefect.resource.id": f"open-connectors.authorization.{flow_run_id}",
            "prefect.resource.name": instance_name,
            "open-connectors.element-key": element_key,
        },
        related=[block_resource(block_name)] if block_name else None,
        payload={
            "instance_name": instance_name,
            "element_key": element_key,
            "block_name": block_name,
            "reason": reason[:MAX_REASON_LENGTH],
        },
    )


def block_resource(block_name: str) -> dict[str, str]:
    """A related resource naming the saved-instance block."""
    return {
        "prefect.resource.id": f"open-connectors.block.{block_name}",
        "prefect.resource.role": "saved-instance-block",
        "prefect.resource.name": block_name,
    }


def emit_consent_event(
    event: str,
    *,
    flow_run_id: str,
    instance_name: str,
    connector: str,
    element_key: str = "",
    block_name: str = "",
    link: str = "",
    expires_at: datetime | None = None,
    flow_run_url: str | None = None,
) -> None:
    """Emit `open-connectors.consent.requested` or `.expired` for one authorization run.

    Automations send the link on from `event.payload.link` (see `deployments/automations.py`).
    """
    related = [
        {
            "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
            "prefect.resource.role": "flow-run",
        }
    ]
    if block_name:
        related.append(block_resource(block_name))
    emit_event(
        event=event,
        resource={
            "prefect.resource.id": f"open-connectors.authorization.{flow_run_id}",
            "prefect.resource.name": instance_name,
            "open-connectors.element-key": element_key,
        },
        related=related,
        payload={
            "flow_run_id": flow_run_id,
            "instance_name": instance_name,
            "connector": connector,
            "element_key": element_key,
            "block_name": block_name,
            "link": link,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "flow_run_url": flow_run_url,
        },
    )
