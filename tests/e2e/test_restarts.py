"""Restarts while a run waits: the person's later answer still completes it, with one instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client

from tests.e2e.conftest import (
    SUSPEND_AT_ONCE,
    SandboxAdmin,
    consent_redirect,
    run_tag,
    start_authorization,
)
from tests.e2e.leak_audit import LeakAudit
from tests.e2e.scenarios import answers_after_a_server_restart
from tooling.devstack.runs import wait_for_final
from tooling.devstack.stack import LocalStack, local_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
async def own_stack(
    tmp_path: Path, sandbox_blocks: LocalStack, leak_audit: LeakAudit
) -> AsyncIterator[LocalStack]:
    """A stack of its own, since these tests stop its processes (the session's stays untouched)."""
    with local_stack(tmp_path / "stack", lifetime=900, environment=SUSPEND_AT_ONCE) as stack:
        await stack.save_sandbox_blocks()
        yield stack
        await leak_audit.record(stack)


async def test_an_answer_after_the_prefect_server_restarted_completes_the_run(
    own_stack: LocalStack,
) -> None:
    await answers_after_a_server_restart(own_stack, ["Server restart ERP"])


async def test_an_answer_after_the_serving_process_was_killed_completes_the_run(
    own_stack: LocalStack,
) -> None:
    async with get_client() as prefect, httpx.AsyncClient(timeout=60) as browser:
        assert str(prefect.api_url).rstrip("/") == own_stack.prefect.api_url
        run = await start_authorization("Killed serve ERP")
        redirect = await consent_redirect(prefect, run)
        for process in list(own_stack.serving):
            process.kill()  # SIGKILL, like an out-of-memory kill or a lost machine
            own_stack.serving.remove(process)
        own_stack.start_serving(name="serve-after-kill")
        page = await browser.get(redirect)
        assert page.status_code == 200, page.text
        final = await wait_for_final(prefect, run.id, timeout=120)
        assert final.state is not None and final.state.is_completed(), final.state
        admin = SandboxAdmin(httpx.AsyncClient(base_url=own_stack.sandbox.url))
        assert len(await admin.instances(run_tag(run.id))) == 1
        await admin.http.aclose()
