"""Example automations: send the consent link (and expiries) through a Prefect notification block.

When an authorization run starts waiting it emits `open-connectors.consent.requested`
with the link in `event.payload.link`; the health check emits
`open-connectors.consent.expired` for a wait that timed out. These automations pass
both on through any saved notification block (Custom Webhook, Slack, e-mail, …):

    python -m deployments.automations --notification-block slack-webhook/ops
    python -m deployments.automations --webhook-url https://hooks.example/consent

The second form first saves a Custom Webhook block (`consent-links`) that posts
`{"subject": …, "body": …}` as JSON. Running either again replaces the automations.
The payloads hold no secret: the link carries the OAuth app's public client id and
the run's state only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.core import Block
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from flows.steps.events import CONSENT_EXPIRED, CONSENT_REQUESTED

CONSENT_REQUESTED_AUTOMATION = "open-connectors-send-consent-link"
CONSENT_EXPIRED_AUTOMATION = "open-connectors-consent-expired"
WEBHOOK_BLOCK = "consent-links"

REQUESTED_SUBJECT = (
    "Authorize {{ event.payload.connector }} for “{{ event.payload.instance_name }}”"
)
REQUESTED_BODY = """\
Please authorize {{ event.payload.connector }} for the instance \
“{{ event.payload.instance_name }}”: open {{ event.payload.link }} , sign in to the account \
and allow access.
The link is valid until {{ event.payload.expires_at }} (UTC).
Run: {{ event.payload.flow_run_url or event.payload.flow_run_id }}"""

EXPIRED_SUBJECT = "Authorization expired: “{{ event.payload.instance_name }}”"
EXPIRED_BODY = """\
Nobody authorized the instance “{{ event.payload.instance_name }}” in time (the wait ended \
{{ event.payload.expires_at }} UTC). Start a new run.
Run: {{ event.payload.flow_run_url or event.payload.flow_run_id }}"""


def consent_automation(
    event: str, *, name: str, notification_block_id: UUID, subject: str, body: str
) -> Automation:
    """An automation that sends each `event` of an authorization through a notification block."""
    return Automation(
        name=name,
        description=f"Sends {event} through a notification block (deployments/automations.py).",
        trigger=EventTrigger(
            match={"prefect.resource.id": "open-connectors.authorization.*"},
            expect={event},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(block_document_id=notification_block_id, subject=subject, body=body)
        ],
    )


async def save_webhook_block(url: str, name: str = WEBHOOK_BLOCK) -> str:
    """Save a Custom Webhook block that posts the subject and body as JSON; return its reference."""
    block = CustomWebhookNotificationBlock(
        name=name, url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    )
    await block.asave(name, overwrite=True)
    return f"{CustomWebhookNotificationBlock.get_block_type_slug()}/{name}"


async def install_consent_automations(notification_block: str) -> list[Automation]:
    """Create (or replace) the two automations, sending through `notification_block`.

    Args:
        notification_block: A saved notification block as `block-type-slug/block-name`,
            e.g. `custom-webhook/consent-links` or `slack-webhook/ops`.

    Returns:
        The created automations.
    """
    block = await Block.aload(notification_block)
    block_id = block._block_document_id
    if block_id is None:
        raise ValueError(f"{notification_block} is not a saved block.")
    created = []
    for event, name, subject, body in (
        (CONSENT_REQUESTED, CONSENT_REQUESTED_AUTOMATION, REQUESTED_SUBJECT, REQUESTED_BODY),
        (CONSENT_EXPIRED, CONSENT_EXPIRED_AUTOMATION, EXPIRED_SUBJECT, EXPIRED_BODY),
    ):
        with contextlib.suppress(ValueError):  # not there yet
            await (await Automation.aread(name=name)).adelete()
        automation = consent_automation(
            event, name=name, notification_block_id=block_id, subject=subject, body=body
        )
        created.append(await automation.acreate())
    return created


async def _main(notification_block: str | None, webhook_url: str | None) -> None:
    reference = notification_block or await save_webhook_block(webhook_url or "")
    for automation in await install_consent_automations(reference):
        print(f"Automation {automation.name!r} ({automation.id}) sends through {reference}.")


def main(argv: list[str] | None = None) -> None:
    """Install the example automations from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--notification-block", help="A saved notification block, as block-type-slug/name."
    )
    target.add_argument("--webhook-url", help="Save a Custom Webhook block posting here.")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.notification_block, args.webhook_url))


if __name__ == "__main__":
    main()
