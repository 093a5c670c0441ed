"""A real browser (Debian's Chromium, driven by Playwright): Prefect UI, consent page, receiver.

Screenshots are written to `$OC_SCREENSHOTS_DIR` when it is set (the README's pictures
come from `OC_SCREENSHOTS_DIR=docs/images scripts/test tests/e2e/test_browser.py`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from uuid import UUID

import pytest
from playwright.async_api import Browser, Locator, Page, Response, async_playwright, expect
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun

from tests.e2e.conftest import SandboxAdmin, run_tag, start_authorization
from tooling.devstack.consent import decide
from tooling.devstack.runs import consent_link, wait_for_final, wait_for_form
from tooling.devstack.stack import LocalStack

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("OC_CHROMIUM", "/usr/bin/chromium")
# No background traffic: this machine's network is closed, and tests must not depend on it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Prefect's server on SQLite refuses a write that meets another writer's at that moment
# ("database is locked", answered 503, nothing kept); its UI then shows an error and keeps
# the form open, and a person submits again. So do these tests, this many times at most.
SUBMISSIONS = 3
# How long the browser waits for the UI and the server (2 busy cores).
UI_ANSWER_TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium from the system's package (never a downloaded build)."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install Debian's 'chromium' package.")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(UI_ANSWER_TIMEOUT_MS)
    # Playwright's assertions keep their own default (5 s): too short for two busy cores.
    expect.set_options(timeout=UI_ANSWER_TIMEOUT_MS)
    tab = await context.new_page()
    yield tab
    await context.close()


async def screenshot(page: Page, name: str) -> None:
    """Keep a picture for the README when asked to."""
    directory = os.environ.get("OC_SCREENSHOTS_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(directory) / f"{name}.png"))


async def open_resume_dialog(page: Page, stack: LocalStack, flow_run_id: object) -> None:
    await page.goto(stack.prefect.flow_run_url(flow_run_id))
    await page.get_by_role("button", name="Resume").first.click()
    await expect(page.get_by_role("dialog")).to_be_visible()


async def submit_until_answered(
    page: Page,
    submit: Locator,
    is_answer: Callable[[Response], bool],
    *,
    before_again: Callable[[], Awaitable[None]] | None = None,
) -> Response:
    """Click `submit` and return the server's answer to it: the first response `is_answer` picks.

    After an answer of 500 or more (the server kept nothing) the button is clicked again,
    as a person would after the UI's error, at most `SUBMISSIONS` times in all;
    `before_again` checks first that submitting again is still what a person would do.
    """
    attempt = 1
    while True:
        async with page.expect_response(is_answer, timeout=UI_ANSWER_TIMEOUT_MS) as answered:
            await submit.click()
        answer = await answered.value
        if answer.status < 500 or attempt == SUBMISSIONS:
            return answer
        if before_again is not None:
            await before_again()
        attempt += 1


def is_resume_answer(response: Response) -> bool:
    """The server's answer to the resume form's submission."""
    return response.request.method == "POST" and response.url.endswith("/resume")


async def assert_waiting_on(prefect: PrefectClient, flow_run_id: UUID, prompt_key: str) -> None:
    """The run still waits on the prompt whose answer key is `prompt_key`."""
    run = await prefect.read_flow_run(flow_run_id)
    state = run.state
    keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
    assert keyset and keyset["response"] == prompt_key, f"The run moved on: {state}"


async def paste_into_resume_form(
    page: Page, prefect: PrefectClient, stack: LocalStack, flow_run_id: UUID, value: str
) -> FlowRun:
    """Paste `value` into the run's resume form, submit it, and return the run once final.

    If the Prefect UI redraws its form between the fill and the submit, it sends the
    form empty and the run asks again (an empty answer asks again, tested elsewhere):
    the value is then pasted into the new form, once.
    """
    for _ in range(2):
        run = await prefect.read_flow_run(flow_run_id)
        assert run.state is not None and run.state.state_details.run_input_keyset, run.state
        answered_key = run.state.state_details.run_input_keyset["response"]
        await open_resume_dialog(page, stack, flow_run_id)
        dialog = page.get_by_role("dialog")
        # The form is drawn once the run's input schema has loaded: a value typed before
        # that is wiped by the redraw, and the run would be resumed with an empty answer.
        link = dialog.get_by_role("link", name="Authorize Infusionsoft ERP")
        await expect(link).to_be_visible()
        code = dialog.get_by_role("textbox").first
        await code.fill(value)
        await expect(code).to_have_value(value)
        answer = await submit_until_answered(
            page,
            dialog.get_by_role("button", name="Submit"),
            is_resume_answer,
            before_again=partial(assert_waiting_on, prefect, flow_run_id, answered_key),
        )
        try:
            await expect(dialog).to_be_hidden()
        except AssertionError as exc:
            text = await dialog.inner_text()
            raise AssertionError(
                f"The resume dialog stayed open after the answer {answer.status} "
                f"{await answer.text()}: {text}"
            ) from exc
        final = await final_or_asked_again(prefect, flow_run_id, answered_key)
        if final is not None:
            return final
        await wait_for_form(prefect, flow_run_id)
    raise AssertionError("The run asked twice again after the pasted answer.")


async def final_or_asked_again(
    prefect: PrefectClient, flow_run_id: UUID, answered_key: str, timeout: float = 120
) -> FlowRun | None:
    """The run once final, or None once it waits on a prompt other than `answered_key`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await prefect.read_flow_run(flow_run_id)
        state = run.state
        if state is not None and state.is_final():
            return run
        keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
        if keyset and keyset["response"] != answered_key:
            return None
        await asyncio.sleep(0.2)
    raise AssertionError(f"The run {flow_run_id} neither ended nor asked again in {timeout} s.")


async def test_one_click_from_the_resume_dialog_to_a_saved_instance(
    page: Page, prefect: PrefectClient, sandbox: SandboxAdmin, sandbox_blocks: LocalStack
) -> None:
    run = await start_authorization("Browser ERP")
    _, description = await wait_for_form(prefect, run.id)
    link = consent_link(description)

    await open_resume_dialog(page, sandbox_blocks, run.id)
    dialog = page.get_by_role("dialog")
    consent = dialog.get_by_role("link", name="Authorize Infusionsoft ERP")
    await expect(consent).to_have_attribute("href", link)
    await expect(dialog).to_contain_text("Browser ERP")
    await screenshot(page, "resume-dialog")

    await page.goto(await consent.get_attribute("href") or "")
    await expect(page.locator("#approve")).to_be_visible()
    await screenshot(page, "consent-page")
    await page.locator("#approve").click()
    await expect(page.locator("#title")).to_have_text("Authorization received")
    await expect(page.locator("main")).to_contain_text("Browser ERP")
    await screenshot(page, "authorized-page")

    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_completed(), final.state
    assert len(await sandbox.instances(run_tag(run.id))) == 1


async def test_deny_in_the_browser_fails_the_run_and_creates_nothing(
    page: Page, prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    run = await start_authorization("Browser refused ERP")
    _, description = await wait_for_form(prefect, run.id)
    await page.goto(consent_link(description))
    await page.locator("#deny").click()
    await expect(page.locator("#title")).to_have_text("Access refused")
    await screenshot(page, "refused-page")
    final = await wait_for_final(prefect, run.id)
    assert final.state is not None and final.state.is_failed()
    assert "access_denied" in (final.state.message or "")
    assert await sandbox.instances(run_tag(run.id)) == []


async def test_pasting_the_redirect_address_into_the_resume_form(
    page: Page, prefect: PrefectClient, sandbox: SandboxAdmin, sandbox_blocks: LocalStack
) -> None:
    """Without the receiver (a callback page that only shows the address), a person pastes it."""
    run = await start_authorization("Browser paste ERP")
    _, description = await wait_for_form(prefect, run.id)
    redirect = await decide(consent_link(description))  # not followed: the person copies it

    final = await paste_into_resume_form(page, prefect, sandbox_blocks, run.id, redirect)
    assert final.state is not None and final.state.is_completed(), final.state
    assert len(await sandbox.instances(run_tag(run.id))) == 1
