"""The flow called directly (a script, a notebook): it pauses in process instead of suspending."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun

from flows import authenticate_connector_instance
from open_connectors import AuthorizationTimeoutError
from tests.e2e.conftest import SERVER, SandboxAdmin, consent_redirect, run_tag
from tooling.devstack.runs import resume_with_answer, wait_for_form
from tooling.devstack.stack import LocalStack

pytestmark = pytest.mark.e2e


async def find_run(client: PrefectClient, name: str, timeout: float = 60) -> FlowRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
        )
        if runs:
            return runs[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"No run named {name!r}")


async def test_a_direct_run_pauses_and_continues_in_its_process(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    flow_call = asyncio.create_task(
        authenticate_connector_instance(
            instance_name="Direct ERP", configuration={"infusionsoft.server": SERVER}
        )
    )
    run = await find_run(prefect, "authenticate-Direct ERP")
    waiting, _ = await wait_for_form(prefect, run.id)
    assert waiting.state is not None and waiting.state.name == "Paused"
    assert waiting.deployment_id is None
    redirect = await consent_redirect(prefect, run)
    resumed_at = time.monotonic()
    await resume_with_answer(prefect, run.id, {"code": redirect})
    summary = await asyncio.wait_for(flow_call, timeout=60)
    # The paused process polls every 2 seconds: the answer is picked up promptly.
    assert time.monotonic() - resumed_at < 10
    assert summary.block_name == "direct-erp" and summary.created
    assert len(await sandbox.instances(run_tag(run.id))) == 1


async def test_a_direct_run_that_nobody_answers_times_out_in_words(
    prefect: PrefectClient, sandbox_blocks: LocalStack
) -> None:
    with pytest.raises(AuthorizationTimeoutError, match=r"Nobody answered .* Start a new run"):
        await authenticate_connector_instance(
            instance_name="Direct slow ERP",
            configuration={"infusionsoft.server": SERVER},
            authorization_timeout_minutes=0.05,
        )


def test_blocks_register_with_the_prefect_cli(sandbox_blocks: LocalStack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "blocks"],
        env=sandbox_blocks.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "type", "ls"],
        env={**sandbox_blocks.env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    for slug in (
        "open-connectors-credentials",
        "open-connectors-oauth-app",
        "open-connectors-instance",
    ):
        assert slug in listing
