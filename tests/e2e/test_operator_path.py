"""The operator's path in a real browser: run form → notification with the link → Allow → done.

The operator opens the deployment's run form in the Prefect UI, picks the saved blocks,
types the server and starts the run; the example automation (deployments/automations.py)
posts the consent link through a Custom Webhook block to a webhook receiver on loopback;
the account owner opens the link from the notification and clicks Allow; the callback
receiver resumes the run, which completes. Screenshots go to `$OC_SCREENSHOTS_DIR`.
"""

from __future__ import annotations

import html
import json
import queue
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.async_api import Locator, Page, Response, expect
from prefect.automations import Automation
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from prefect.utilities.urls import url_for

from deployments.automations import (
    CONSENT_EXPIRED_AUTOMATION,
    CONSENT_REQUESTED_AUTOMATION,
    install_consent_automations,
    save_webhook_block,
)
from tests.e2e.conftest import DEPLOYMENT, SandboxAdmin, run_tag
from tests.e2e.test_browser import (  # noqa: F401 - fixtures
    browser,
    page,
    screenshot,
    submit_until_answered,
)
from tooling.devstack.runs import wait_for_final
from tooling.devstack.stack import ENCRYPTED_KEY_BLOCK, LocalStack

pytestmark = pytest.mark.e2e

WEBHOOK_LIFETIME_SECONDS = 150
INSTANCE_NAME = "Operator ERP"


class _Webhook(BaseHTTPRequestHandler):
    received: queue.Queue[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 65536))
        self.received.put(json.loads(body or b"{}"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    """A webhook receiver on loopback that stops after the test, or by itself in 150 s."""
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    handler = type("Webhook", (_Webhook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    timer = threading.Timer(WEBHOOK_LIFETIME_SECONDS, server.shutdown)
    timer.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/consent", received
    finally:
        timer.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _field(tab: Page, label: str) -> Locator:
    """The run form's property with this label (the innermost one, for nested fields)."""
    title = tab.locator(
        ".schema-form-property__label", has_text=re.compile(f"^{re.escape(label)}$")
    )
    return tab.locator(".schema-form-property", has=title).last


async def _type(tab: Page, label: str, text: str) -> None:
    await _field(tab, label).locator("textarea, input").first.fill(text)


async def _pick_block(tab: Page, label: str, name: str) -> None:
    """Choose a saved block in the field's picker, opened from the keyboard.

    A synthetic click on the picker's button opens and closes its pop-over at once in
    headless Chromium (the pop-over closes on the same pointer event); the arrow key,
    as a keyboard user opens it, is reliable.
    """
    button = _field(tab, label).locator(".block-document-input__select button").first
    await button.focus()
    await tab.keyboard.press("ArrowDown")
    options = tab.locator(".p-pop-over-content .p-select-option")
    await options.filter(has_text=re.compile(f"^{re.escape(name)}$")).first.click()
    await expect(options).to_have_count(0)  # closed again, the block chosen


async def test_operator_starts_from_the_run_form_and_the_link_arrives_by_notification(
    page: Page,  # noqa: F811 - the fixture
    webhook: tuple[str, queue.Queue[dict[str, Any]]],
    prefect: PrefectClient,
    sandbox: SandboxAdmin,
    sandbox_blocks: LocalStack,
) -> None:
    url, received = webhook
    await install_consent_automations(await save_webhook_block(url, name="operator-webhook"))
    try:
        deployment = await prefect.read_deployment_by_name(DEPLOYMENT)
        await page.goto(
            url_for(
                "deployment", obj_id=str(deployment.id), default_base_url=sandbox_blocks.prefect.url
            )
            or ""
        )
        await page.get_by_role("button", name="Run", exact=True).click()
        await page.get_by_text("Custom run", exact=True).click()

        # Typed fields and pickers, not a JSON editor and no None switch.
        await _type(page, "instance_name", INSTANCE_NAME)
        await _type(page, "Infusionsoft server (Optional)", "dt123.infusionsoft.com")
        # The server is a text field, not a JSON editor.
        await expect(_field(page, "configuration (Optional)").locator(".cm-editor")).to_have_count(
            0
        )
        await expect(page.get_by_text("Property is type None")).to_have_count(0)
        await _pick_block(page, "credentials_block (Optional)", "open-connectors")
        await _pick_block(page, "oauth_app_block (Optional)", "infusionsoft-oauth-app")
        await _pick_block(page, "Infusionsoft encrypted key (Optional)", ENCRYPTED_KEY_BLOCK)
        await screenshot(page, "run-form")
        created = await submit_until_answered(
            page, page.get_by_role("button", name="Submit"), _is_run_creation
        )
        assert created.ok, f"The run was not created: {created.status} {await created.text()}"

        # The notification with the consent link.
        notification = await _next(received, timeout=90)
        assert INSTANCE_NAME in notification["subject"]
        link = _link_in(notification["body"])
        runs = await prefect.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id])
            )
        )
        run = next(item for item in runs if item.parameters.get("instance_name") == INSTANCE_NAME)
        # The picked blocks were sent as references and reached the flow as names.
        assert "$ref" in json.dumps(run.parameters["credentials_block"])
        # What the webhook received, shown as a chat or mail client would.
        await page.set_viewport_size({"width": 900, "height": 260})
        await page.set_content(
            "<style>body{font:15px sans-serif;margin:24px}h1{font-size:20px}"
            "pre{white-space:pre-wrap;word-break:break-all;font:13px monospace}</style>"
            f"<main><h1>{html.escape(notification['subject'])}</h1>"
            f"<pre>{html.escape(notification['body'])}</pre></main>"
        )
        await screenshot(page, "consent-notification")
        await page.set_viewport_size({"width": 1280, "height": 860})

        # The account owner clicks Allow; the receiver resumes the run.
        await page.goto(link)
        await page.locator("#approve").click()
        await expect(page.locator("#title")).to_have_text("Authorization received")
        final = await wait_for_final(prefect, run.id)
        assert final.state is not None and final.state.is_completed(), final.state
        assert len(await sandbox.instances(run_tag(run.id))) == 1
    finally:
        for name in (CONSENT_REQUESTED_AUTOMATION, CONSENT_EXPIRED_AUTOMATION):
            await (await Automation.aread(name=name)).adelete()


def _is_run_creation(response: Response) -> bool:
    """The server's answer to the run form's submission."""
    return response.request.method == "POST" and response.url.endswith("/create_flow_run")


async def _next(received: queue.Queue[dict[str, Any]], *, timeout: float) -> dict[str, Any]:
    import asyncio

    return await asyncio.to_thread(received.get, True, timeout)


def _link_in(body: str) -> str:
    words = [word for word in body.split() if word.startswith(("http://", "https://"))]
    assert words, body
    return words[0]
