"""The deployments: registered by `prefect deploy --all` and by serving; waiting frees machines."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)

import flows
from deployments.spec import load_specs
from tests.e2e.conftest import SandboxAdmin, run_tag, start_authorization
from tooling.devstack.consent import decide
from tooling.devstack.prefect_server import prefect_environment, start_prefect_server
from tooling.devstack.proctree import flow_run_processes
from tooling.devstack.runs import consent_link, resume_with_answer, wait_for_final, wait_for_form
from tooling.devstack.stack import SERVED_DEPLOYMENTS, LocalStack
from tooling.devstack.workers import create_process_pool, deploy_all

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(flows.__file__).resolve().parent.parent
POOL = "open-connectors"
OAUTH_URL_PATH = "/elements/api-v2/elements/infusionsofterp/oauth/url"


def expected() -> dict[str, tuple[str, dict[str, Any]]]:
    """Per deployment name: its flow name and default parameters, as `prefect.yaml` says."""
    return {spec.name: (spec.load_flow().name, spec.parameters) for spec in load_specs()}


def test_prefect_deploy_registers_the_four_deployments_with_a_process_pool(
    tmp_path: Path,
) -> None:
    # A server of its own: deploying to the session's server would take its deployments
    # away from the serving process.
    server = start_prefect_server(tmp_path / "home")
    try:
        env = prefect_environment(server.home, server.api_url)
        create_process_pool(env, tmp_path, POOL)
        # From another directory's point of view the deploy must not matter: run it where
        # the README says, with nothing of this test's own environment but the server.
        deploy_all(env, tmp_path, PROJECT_ROOT / "deployments")
        api = httpx.Client(base_url=server.api_url, timeout=10)
        registered = {
            item["name"]: item for item in api.post("/deployments/filter", json={}).json()
        }
        assert set(registered) == set(expected())
        flows_by_id = {
            item["id"]: item["name"] for item in api.post("/flows/filter", json={}).json()
        }
        for name, (flow_name, parameters) in expected().items():
            deployment = registered[name]
            assert flows_by_id[deployment["flow_id"]] == flow_name
            assert deployment["work_pool_name"] == POOL
            assert deployment["parameters"] == parameters
            # A worker moves into the project before running the flow.
            assert deployment["pull_steps"] == [
                {
                    "prefect.deployments.steps.set_working_directory": {
                        "directory": str(PROJECT_ROOT)
                    }
                }
            ]
        verify = registered["verify-connector-instances"]
        assert [item["schedule"]["cron"] for item in verify["schedules"]] == ["0 6 * * *"]
        assert verify["global_concurrency_limit"]["limit"] == 1
        (automation,) = api.post("/automations/filter", json={}).json()
        assert automation["trigger"]["expect"] == ["open-connectors.instance.created"]
        (action,) = automation["actions"]
        assert action["deployment_id"] == registered["export-connector-resource"]["id"]
        assert action["parameters"] == {"instance_block": "{{ event.payload.block_name }}"}
    finally:
        server.stop()


async def test_serving_registers_the_same_four_deployments(
    prefect: PrefectClient, sandbox_blocks: LocalStack
) -> None:
    assert len(SERVED_DEPLOYMENTS) == len(load_specs())
    for name, (flow_name, parameters) in expected().items():
        deployment = await prefect.read_deployment_by_name(f"{flow_name}/{name}")
        assert deployment.parameters == parameters
        assert (flow_name, name) in SERVED_DEPLOYMENTS
    verify = await prefect.read_deployment_by_name(
        "verify-connector-instances/verify-connector-instances"
    )
    assert [item.schedule.cron for item in verify.schedules] == ["0 6 * * *"]  # type: ignore[union-attr]
    assert verify.global_concurrency_limit is not None
    assert verify.global_concurrency_limit.limit == 1
    (automation,) = await prefect.read_automations_by_name(
        "export-connector-resource__automation_1"
    )
    assert automation.trigger.expect == {"open-connectors.instance.created"}  # type: ignore[union-attr]


def flow_runs_of(pids: set[int]) -> list[int]:
    """The flow-run processes of the serving processes `pids` (not their helpers)."""
    return [child for pid in pids for child in flow_run_processes(pid)]


async def test_a_suspended_authorization_survives_restarting_the_serving_process(
    prefect: PrefectClient, sandbox: SandboxAdmin, sandbox_blocks: LocalStack
) -> None:
    started_at = len(await sandbox.requests())
    run = await start_authorization("Restart ERP")
    waiting, description = await wait_for_form(prefect, run.id)
    assert waiting.state is not None and waiting.state.name == "Suspended"
    first_link = consent_link(description)

    # Waiting holds no process: the run's subprocess has exited.
    serving = [process for process in sandbox_blocks.serving if process.is_running()]
    pids = {process.pid for process in serving}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and flow_runs_of(pids):  # noqa: ASYNC110 - polling /proc
        await asyncio.sleep(0.5)
    assert flow_runs_of(pids) == []

    # Every serving process goes away; the run waits on, on the server alone.
    for process in serving:
        process.stop()
    await asyncio.sleep(2)
    still = await prefect.read_flow_run(run.id)
    assert still.state is not None and still.state.name == "Suspended"
    # The schedules stay on: another serving process or a worker may serve the deployments.
    verify = await prefect.read_deployment_by_name(
        "verify-connector-instances/verify-connector-instances"
    )
    assert verify.paused is False

    # The person answers (the provider's page needs no runner), then a new process comes up.
    redirect = await decide(first_link)
    sandbox_blocks.start_serving(name=f"serve-restarted-{os.getpid()}")
    await resume_with_answer(prefect, run.id, {"code": redirect})
    final = await wait_for_final(prefect, run.id, timeout=90)
    assert final.state is not None and final.state.is_completed(), final.state

    # The re-run did nothing twice. The answer carried the first link's state and the
    # re-run accepted it: it checked against the same state. One link, one instance.
    links = await prefect.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
            key=ArtifactFilterKey(any_=["consent-link-restart-erp"]),
        )
    )
    assert len(links) == 1 and first_link in str(links[0].data)
    requests = (await sandbox.requests())[started_at:]
    assert [r["method"] for r in requests if r["path"] == OAUTH_URL_PATH] == ["POST"]
    creations = [r for r in requests if r["path"] == "/elements/api-v2/instances"]
    assert [r["method"] for r in creations].count("POST") == 1
    assert len(await sandbox.instances(run_tag(run.id))) == 1
