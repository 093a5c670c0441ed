"""The project's own `prefect.yaml` on a process work pool: a run that outlives its worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client

import flows
from tests.e2e.conftest import (
    DEPLOYMENT,
    SUSPEND_AT_ONCE,
    SandboxAdmin,
    consent_redirect,
    run_tag,
    start_authorization,
)
from tests.e2e.leak_audit import LeakAudit
from tests.e2e.scenarios import (
    completes_when_its_supervisor_dies_mid_step,
    state_names,
    suspend_and_resume,
)
from tooling.devstack.consent import deliver
from tooling.devstack.processes import ManagedProcess
from tooling.devstack.proctree import process_tree
from tooling.devstack.runs import wait_for_final, wait_for_form
from tooling.devstack.stack import LocalStack, local_stack
from tooling.devstack.workers import WORK_POOL, create_process_pool, deploy_all

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(flows.__file__).resolve().parent.parent
# `docker stop`'s default wait between its SIGTERM and its SIGKILL.
DOCKER_STOP_SECONDS = 10
# What Prefect's process worker makes for each run it starts (`tempfile`, under TMPDIR).
WORKSPACE_DIRECTORIES = "prefect-workspace-attempt-*"


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, leak_audit: LeakAudit
) -> AsyncIterator[LocalStack]:
    """A stack of its own with no serving process (nothing but a worker may pick a run up).

    It stands in for the session's stack in this module; the deployments come from
    `prefect deploy --all` on the `open-connectors` process pool.
    """
    home = tmp_path_factory.mktemp("worker-stack")
    machine_tmp = Path(tempfile.gettempdir())
    before = set(machine_tmp.glob(WORKSPACE_DIRECTORIES))
    with local_stack(home, serve=False, lifetime=1200, environment=SUSPEND_AT_ONCE) as running:
        create_process_pool(running.env, home)
        deploy_all(running.env, home, PROJECT_ROOT / "deployments")
        await running.save_sandbox_blocks()
        yield running
        await leak_audit.record(running)
    # A process worker's directory per run, also one a killed worker leaves behind, was
    # in the stack's scratch directory, which went with the stack.
    assert not running.scratch.exists()
    assert set(machine_tmp.glob(WORKSPACE_DIRECTORIES)) <= before


@pytest.mark.timeout(600)
async def test_a_run_waiting_when_its_worker_is_killed_completes_on_another_worker(
    stack: LocalStack,
) -> None:
    async with get_client() as client:
        assert str(client.api_url).rstrip("/") == stack.prefect.api_url
        deployment = await client.read_deployment_by_name(DEPLOYMENT)
        assert deployment.work_pool_name == WORK_POOL
        assert stack.serving == []
    first = stack.start_worker("worker-first")
    second: list[ManagedProcess] = []

    def kill_first_start_second() -> None:
        # SIGKILL to the worker's process group, as an out-of-memory kill or a lost machine.
        first.kill()
        assert not first.is_running()
        second.append(stack.start_worker("worker-second"))

    async with (
        get_client() as client,
        httpx.AsyncClient(base_url=stack.sandbox.url, timeout=30) as admin,
    ):
        final = await suspend_and_resume(
            client, SandboxAdmin(admin), "Worker ERP", while_waiting=kill_first_start_second
        )
    # The first worker started the run, the second one finished it.
    run_id = str(final.id)
    assert run_id in first.log_path.read_text(errors="replace")
    assert run_id in second[0].log_path.read_text(errors="replace")


HOT = {"OC_HOT_WAIT_SECONDS": "120"}


@pytest.mark.timeout(600)
async def test_a_run_waiting_hot_when_its_worker_is_stopped_completes_on_another_worker(
    stack: LocalStack,
) -> None:
    # SIGTERM to the worker (a restart, `docker stop`): the worker stops the run's process
    # with SIGTERM on its way out, and nobody reports anything afterwards. The run waited
    # hot in that process; it waits on, suspended, and the next worker completes it.
    def stop(first: ManagedProcess, run_processes: set[int]) -> None:
        os.kill(first.pid, signal.SIGTERM)
        try:
            first.popen.wait(timeout=DOCKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            # Prefect's worker took longer to stop (seen in CI): SIGKILL to every process
            # of it, its runs' too, as `docker stop` does to a container after its wait.
            first.kill()
            for pid in run_processes:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    await _hot_wait_outlives_its_worker(stack, "Worker hot ERP", stop)


@pytest.mark.timeout(600)
async def test_a_run_waiting_hot_when_its_worker_alone_is_killed_completes_on_another_worker(
    stack: LocalStack,
) -> None:
    # SIGKILL to the worker's pid only (an out-of-memory kill, `kill -9`): the run's
    # process is orphaned, with nobody to stop it or report it. It ends by itself and
    # leaves the run suspended, rather than take the answer unsupervised.
    def kill_worker_alone(first: ManagedProcess, run_processes: set[int]) -> None:
        os.kill(first.pid, signal.SIGKILL)
        first.popen.wait(timeout=DOCKER_STOP_SECONDS)

    await _hot_wait_outlives_its_worker(stack, "Worker orphan ERP", kill_worker_alone)


@pytest.mark.timeout(600)
async def test_a_run_whose_worker_alone_dies_mid_step_still_completes(
    stack: LocalStack,
) -> None:
    # SIGKILL to the worker's pid only while the answered run waits for the platform's
    # answer to its instance's creation. The worker read the run's output through pipes:
    # the run's next console log would end its process (Rich's SystemExit), between the
    # instance's creation and its token's save. It goes on and completes instead.
    for earlier in stack.workers:
        earlier.stop()
    first = stack.start_worker("worker-mid-step", environment=HOT)

    def kill_worker_alone() -> None:
        os.kill(first.pid, signal.SIGKILL)
        first.popen.wait(timeout=DOCKER_STOP_SECONDS)

    async with get_client() as client, httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        await completes_when_its_supervisor_dies_mid_step(
            client, sandbox, "Worker lost mid-step ERP", kill_worker_alone
        )


async def _hot_wait_outlives_its_worker(
    stack: LocalStack, name: str, end_worker: Callable[[ManagedProcess, set[int]], None]
) -> None:
    """A run waits hot on a worker that `end_worker` ends; another worker completes it."""
    for earlier in stack.workers:  # their runs suspend at once; this one's wait hot
        earlier.stop()
    first = stack.start_worker(f"{name.lower().replace(' ', '-')}-first", environment=HOT)
    async with get_client() as client:
        run = await start_authorization(name)
        waiting, _ = await wait_for_form(client, run.id)
        assert waiting.state is not None and waiting.state.name == "Paused"
        run_processes = set(process_tree([first.pid])) - {first.pid}
        assert run_processes
        end_worker(first, run_processes)
        for _ in range(150):
            if not any(os.path.exists(f"/proc/{pid}") for pid in run_processes):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"the run's processes {run_processes} outlived the worker")
        current = await client.read_flow_run(run.id)
        assert current.state is not None and current.state.state_details.pause_reschedule, (
            current.state
        )
        names = await state_names(client, run.id)
        assert not {"Crashed", "Cancelling", "Cancelled"} & set(names), names
        second = stack.start_worker(f"{name.lower().replace(' ', '-')}-second", environment=HOT)
        async with httpx.AsyncClient(timeout=60) as browser:
            page = await deliver(await consent_redirect(client, run), client=browser)
        assert page.status_code == 200, page.text
        final = await wait_for_final(client, run.id, timeout=180)
        assert final.state is not None and final.state.is_completed(), final.state
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as http:
        instances = (await http.get("/_sandbox/instances")).json()
    assert len([i for i in instances if run_tag(run.id) in i["tags"]]) == 1
    assert str(run.id) in second.log_path.read_text(errors="replace")
