"""End-to-end scenarios shared by the SQLite, PostgreSQL and worker tests.

Each scenario drives one whole story against whatever stack the Prefect client
points at (and the sandbox given), and asserts its outcome: the tests that call it
only choose the stack and the numbers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun

from blocks import ConnectorInstance
from flows.steps.parameters import block_name_for
from tests.e2e.conftest import (
    SandboxAdmin,
    consent_redirect,
    run_tag,
    start_authorization,
    start_authorizations,
)
from tooling.devstack.consent import deliver
from tooling.devstack.runs import resume_with_answer, wait_for_final, wait_for_form
from tooling.devstack.stack import LocalStack
from tooling.sandbox.testing import API

# How long one page of the receiver may take in these scenarios: it answers within its
# `answer_within_seconds` (30 s), "still working" past it.
CALLBACK_TIMEOUT = 60.0


async def assert_one_own_instance(
    sandbox: SandboxAdmin, runs: list[FlowRun], names: list[str]
) -> None:
    """Each run created exactly one instance, carrying its tag and its own name."""
    everything = await sandbox.instances()
    for run, name in zip(runs, names, strict=True):
        created = [item for item in everything if run_tag(run.id) in item["tags"]]
        # No answer reached another run, and none was applied twice.
        assert [item["name"] for item in created] == [name], (run.id, created)


async def state_names(client: PrefectClient, flow_run_id: UUID) -> list[str]:
    """The names of the run's states, oldest first."""
    states = await client.read_flow_run_states(flow_run_id)
    return [state.name for state in sorted(states, key=lambda state: state.timestamp)]


async def suspend_and_resume(
    client: PrefectClient,
    sandbox: SandboxAdmin,
    name: str,
    *,
    while_waiting: Callable[[], None] | None = None,
) -> FlowRun:
    """Start a deployment run, see it Suspended, answer with the redirect address: one instance.

    Args:
        client: A client of the stack's server.
        sandbox: The stack's sandbox.
        name: The instance name.
        while_waiting: Called once the run is suspended, before the answer (kill a
            worker, start another one).

    Returns:
        The completed run.
    """
    run = await start_authorization(name)
    waiting, _ = await wait_for_form(client, run.id, timeout=120)
    assert waiting.state is not None and waiting.state.name == "Suspended", waiting.state
    redirect = await consent_redirect(client, run)
    if while_waiting is not None:
        while_waiting()
    await resume_with_answer(client, run.id, {"code": redirect})
    final = await wait_for_final(client, run.id, timeout=180)
    assert final.state is not None and final.state.is_completed(), final.state
    history = await state_names(client, run.id)
    assert "Suspended" in history, history
    assert history.index("Suspended") < len(history) - 1 and history[-1] == "Completed", history
    await assert_one_own_instance(sandbox, [run], [name])
    return final


async def concurrent_answers(
    client: PrefectClient,
    sandbox: SandboxAdmin,
    names: list[str],
    *,
    seed: int,
    spread: float = 2.0,
    timeout: float = 900,
) -> None:
    """Many runs wait at once; their answers reach the callback receiver in random order.

    Every run completes with exactly its own instance.

    Args:
        client: A client of the stack's server.
        sandbox: The stack's sandbox.
        names: One instance name per run.
        seed: The order of the answers.
        spread: The answers trickle in over this many seconds.
        timeout: Seconds for all runs to wait, and again for all to complete.
    """
    count = len(names)
    started = time.monotonic()
    runs = await start_authorizations(names)
    # Everyone opens their own link (the runs are all suspended at this point).
    redirects = await asyncio.gather(
        *(consent_redirect(client, run, timeout=timeout) for run in runs)
    )
    print(f"{count} runs waiting after {time.monotonic() - started:.0f} s")
    order = list(range(count))
    randomness = random.Random(seed)
    randomness.shuffle(order)
    delays = [randomness.random() * spread for _ in order]

    # Under a burst on SQLite Prefect may answer slowly: the receiver's page then says
    # "still working" within its bound, and the person reloads (`deliver`).
    async with httpx.AsyncClient(
        timeout=CALLBACK_TIMEOUT, limits=httpx.Limits(max_connections=count)
    ) as http:

        async def answer(index: int, delay: float) -> httpx.Response:
            await asyncio.sleep(delay)  # the answers trickle in, out of order
            return await deliver(redirects[index], client=http)

        pages = await asyncio.gather(*(answer(i, d) for i, d in zip(order, delays, strict=True)))
    refused = [(page.status_code, page.text) for page in pages if page.status_code != 200]
    assert not refused, refused

    answered = time.monotonic()
    finals = await asyncio.gather(
        *(wait_for_final(client, run.id, timeout=timeout) for run in runs)
    )
    print(f"{count} runs completed {time.monotonic() - answered:.0f} s after the answers")
    assert [final.state.type.value for final in finals if final.state] == ["COMPLETED"] * count
    await assert_one_own_instance(sandbox, runs, names)


async def answers_after_a_server_restart(stack: LocalStack, names: list[str]) -> None:
    """Runs wait, the Prefect server restarts, then answers through the receiver complete them.

    Args:
        stack: The stack whose server restarts; the Prefect client points at it.
        names: One instance name per waiting run.
    """
    async with get_client() as client:
        assert str(client.api_url).rstrip("/") == stack.prefect.api_url
        runs = await start_authorizations(names)
        redirects = await asyncio.gather(*(consent_redirect(client, run) for run in runs))
    stack.restart_prefect_server()
    async with (
        get_client() as client,
        httpx.AsyncClient(timeout=60) as browser,
        httpx.AsyncClient(base_url=stack.sandbox.url, timeout=30) as admin,
    ):
        for run in runs:
            waiting = await client.read_flow_run(run.id)
            assert waiting.state is not None and waiting.state.name == "Suspended"
        pages = await asyncio.gather(*(deliver(redirect, client=browser) for redirect in redirects))
        assert [page.status_code for page in pages] == [200] * len(runs), [p.text for p in pages]
        finals = await asyncio.gather(
            *(wait_for_final(client, run.id, timeout=180) for run in runs)
        )
        for final in finals:
            assert final.state is not None and final.state.is_completed(), final.state
        await assert_one_own_instance(SandboxAdmin(admin), runs, names)


async def completes_when_its_supervisor_dies_mid_step(
    client: PrefectClient, sandbox: httpx.AsyncClient, name: str, kill: Callable[[], None]
) -> FlowRun:
    """A run waiting hot is answered; while it waits for the platform's answer to its
    instance's creation (held 6 s by the sandbox), `kill` ends what started its process.

    The orphaned process must not die on its next console log (Rich's `SystemExit` into
    a pipe nobody reads): it saves the instance's token and completes the run, and the
    run's log says it went on unsupervised.
    """
    run = await start_authorization(name)
    waiting, _ = await wait_for_form(client, run.id)
    assert waiting.state is not None and waiting.state.name == "Paused"
    rule = {
        "method": "POST",
        "path": f"{API}/instances",
        "actions": [{"type": "commit_then_delay", "seconds": 6}],
    }
    assert (await sandbox.post("/_sandbox/faults", json=rule)).status_code == 201
    try:
        async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT) as browser:
            page = await deliver(await consent_redirect(client, run), client=browser)
        assert page.status_code == 200, page.text
        deadline = time.monotonic() + 60
        while not [
            i
            for i in (await sandbox.get("/_sandbox/instances")).json()
            if run_tag(run.id) in i["tags"]
        ]:
            assert time.monotonic() < deadline, "the instance was never created"
            await asyncio.sleep(0.1)
        kill()  # the instance exists; its answer is held: the process is mid-step
        final = await wait_for_final(client, run.id, timeout=60)
    finally:
        await sandbox.delete("/_sandbox/faults")
    assert final.state is not None and final.state.is_completed(), final.state
    saved = await ConnectorInstance.aload(block_name_for(name))
    assert saved.token.get_secret_value()
    only_its = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
    deadline = time.monotonic() + 10  # the run's last log lines are sent in batches
    while True:
        said = [log.message for log in await client.read_logs(log_filter=only_its)]
        if any("is gone: a cancel no longer reaches" in line for line in said):
            break
        assert time.monotonic() < deadline, said
        await asyncio.sleep(0.5)
    instances = (await sandbox.get("/_sandbox/instances")).json()
    assert len([i for i in instances if run_tag(run.id) in i["tags"]]) == 1
    return final
