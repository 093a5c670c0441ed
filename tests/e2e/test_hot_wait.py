"""The hot wait: an answer in the first minutes needs no new process; beyond K runs suspend.

A stack of its own, with a 20-second hot window and two hot slots, so the session's
stack (which suspends at once) is not disturbed. Its runs read their state only once
a minute: what wakes them sooner is Prefect's event stream. Its receiver's pages wait
at most `ANSWER_WITHIN` seconds for Prefect (the last test stops the Prefect server).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling

from blocks import ConnectorInstance
from flows.steps.hot_slots import HOT_WAIT_LIMIT
from tests.e2e.conftest import consent_redirect, run_tag, start_authorization
from tests.e2e.leak_audit import LeakAudit
from tests.e2e.scenarios import completes_when_its_supervisor_dies_mid_step
from tooling.devstack.consent import deliver
from tooling.devstack.proctree import children, command_line, flow_run_processes
from tooling.devstack.runs import wait_for_final, wait_for_form
from tooling.devstack.stack import LocalStack, local_stack

pytestmark = pytest.mark.e2e

WINDOW = 20.0
SLOTS = 2
ANSWER_WITHIN = 3.0
# A cancelled hot run's slot is back within this (its lease would hold it 80 s).
CANCELLED_SLOT_BACK_WITHIN = 10.0
HOT = {
    "OC_HOT_WAIT_SECONDS": str(WINDOW),
    "OC_HOT_WAIT_LIMIT": str(SLOTS),
    "OC_HOT_WAIT_POLL_SECONDS": "60",
    "OC_CALLBACK_ANSWER_WITHIN_SECONDS": str(ANSWER_WITHIN),
}


@pytest.fixture(scope="module")
async def hot_stack(
    tmp_path_factory: pytest.TempPathFactory, sandbox_blocks: LocalStack, leak_audit: LeakAudit
) -> AsyncIterator[LocalStack]:
    """A stack whose runs wait hot first."""
    home: Path = tmp_path_factory.mktemp("hot-stack")
    with local_stack(home, lifetime=900, environment=HOT) as stack:
        await stack.save_sandbox_blocks()
        yield stack
        await leak_audit.record(stack)


async def state_names(client: PrefectClient, run_id: UUID) -> list[str]:
    """The names of every state the run went through, oldest first."""
    states = await client.read_flow_run_states(run_id)
    return [state.name or "" for state in sorted(states, key=lambda s: s.timestamp)]


def waits_suspended(run: FlowRun) -> bool:
    """Whether the run waits suspended: resumed, Prefect schedules it again."""
    state = run.state
    return (
        state is not None
        and state.type == StateType.PAUSED
        and bool(state.state_details.pause_reschedule)
    )


async def first_pause(client: PrefectClient, run_id: UUID) -> float:
    """When the run first waited (its first Paused or Suspended state), in epoch seconds."""
    states = await client.read_flow_run_states(run_id)
    waits = sorted(s.timestamp for s in states if s.type == StateType.PAUSED)
    assert waits, [s.name for s in states]
    return waits[0].timestamp()


async def wait_for_free_hot_slots(client: PrefectClient, timeout: float = 120) -> None:
    """Wait until no hot slot is held."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            limit = await client.read_global_concurrency_limit_by_name(HOT_WAIT_LIMIT)
        except ObjectNotFound:  # no run has waited hot yet: the first creates it
            return
        if limit.active_slots == 0:
            return
        assert time.monotonic() < deadline, f"{limit.active_slots} hot slot(s) still held"
        await asyncio.sleep(1)


async def answer_through_receiver(redirect: str) -> None:
    async with httpx.AsyncClient(timeout=60) as browser:
        page = await deliver(redirect, client=browser)  # reloads while "still working"
    assert page.status_code == 200, page.text


async def test_an_answer_inside_the_window_completes_without_a_new_process(
    hot_stack: LocalStack,
) -> None:
    async with get_client() as prefect:
        run = await start_authorization("Hot ERP")
        waiting, _ = await wait_for_form(prefect, run.id)
        assert waiting.state is not None and waiting.state.name == "Paused"
        # The waiting process was forked from the serving process's fork server (warm),
        # not started as a new interpreter.
        (serving,) = hot_stack.serving
        (fork_server,) = _fork_servers(serving.pid)
        (waiting_process,) = flow_run_processes(serving.pid)
        assert waiting_process in children(fork_server)
        await answer_through_receiver(await consent_redirect(prefect, run))
        answered_at = time.time()
        final = await wait_for_final(prefect, run.id, timeout=60)
        assert final.state is not None and final.state.is_completed(), final.state
        # Woken by the run's Running event, not by the end of the window (no poll in it).
        assert final.state.timestamp.timestamp() - answered_at < WINDOW / 2
        names = await state_names(prefect, run.id)
        # The waiting process took the resumed run back itself (Pending, then Running):
        # no runner started it again (a runner proposes Pending, then Submitting).
        resumed = names[names.index("Resuming") + 1 :]
        assert resumed[:2] == ["Pending", "Running"] and "Submitting" not in resumed, names
        assert "Suspended" not in names, names
        limit = await prefect.read_global_concurrency_limit_by_name(HOT_WAIT_LIMIT)
        assert limit.limit == SLOTS
    async with httpx.AsyncClient(base_url=hot_stack.sandbox.url) as http:
        instances = (await http.get("/_sandbox/instances")).json()
    assert len([i for i in instances if run_tag(run.id) in i["tags"]]) == 1


async def test_beyond_the_limit_a_run_suspends_at_once_and_after_the_window_all_suspend(
    hot_stack: LocalStack,
) -> None:
    async with get_client() as prefect:
        runs = [await start_authorization(f"Hot limit ERP {n}") for n in range(SLOTS + 1)]
        waiting = [(await wait_for_form(prefect, run.id))[0] for run in runs]
        names = sorted(run.state.name for run in waiting if run.state is not None)
        assert names == ["Paused"] * SLOTS + ["Suspended"], names
        # After the window every run has given its process back and waits suspended,
        # its state untouched (a hot wait is a suspension from its start).
        last_pause = max([await first_pause(prefect, run.id) for run in runs])
        await asyncio.sleep(max(0.0, last_pause + WINDOW + 8 - time.time()))
        for run in runs:
            current = await prefect.read_flow_run(run.id)
            assert waits_suspended(current), current.state
        (serving,) = [process for process in hot_stack.serving if process.is_running()]
        assert not flow_run_processes(serving.pid)
        await wait_for_free_hot_slots(prefect, timeout=CANCELLED_SLOT_BACK_WITHIN)
        for run in runs:
            await answer_through_receiver(await consent_redirect(prefect, run))
        finals = [await wait_for_final(prefect, run.id, timeout=120) for run in runs]
        assert all(f.state is not None and f.state.is_completed() for f in finals)
        for run in runs:
            keys = (await prefect.read_flow_run(run.id)).empirical_policy.pause_keys
            assert "authorization-2" not in (keys or set()), keys  # never asked twice


async def test_answers_landing_around_the_end_of_the_window_are_never_lost(
    hot_stack: LocalStack,
) -> None:
    async with get_client() as prefect:
        runs: list[FlowRun] = []
        for n in range(3):
            runs.append(await start_authorization(f"Switch ERP {n}"))
            await asyncio.sleep(0.1)
        redirects = [await consent_redirect(prefect, run) for run in runs]
        paused_at = [await first_pause(prefect, run.id) for run in runs]

        async def answer_at(redirect: str, moment: float) -> None:
            await asyncio.sleep(max(0.0, moment - time.time()))
            await answer_through_receiver(redirect)

        # Each answer lands near the end of its run's window, as its process ends.
        offsets = [-0.3, 0.0, 0.3]
        await asyncio.gather(
            *(
                answer_at(redirect, at + WINDOW + offset)
                for redirect, at, offset in zip(redirects, paused_at, offsets, strict=True)
            )
        )
        finals = [await wait_for_final(prefect, run.id, timeout=120) for run in runs]
        assert all(f.state is not None and f.state.is_completed() for f in finals), [
            f.state for f in finals
        ]
    async with httpx.AsyncClient(base_url=hot_stack.sandbox.url) as http:
        instances = (await http.get("/_sandbox/instances")).json()
    for run in runs:
        assert len([i for i in instances if run_tag(run.id) in i["tags"]]) == 1


async def test_a_cancel_during_the_hot_wait_wins(hot_stack: LocalStack) -> None:
    async with get_client() as prefect:
        await wait_for_free_hot_slots(prefect)
        run = await start_authorization("Cancelled hot ERP")
        waiting, _ = await wait_for_form(prefect, run.id)
        assert waiting.state is not None and waiting.state.name == "Paused"
        await prefect.set_flow_run_state(run.id, Cancelling(), force=True)
        final = await wait_for_final(prefect, run.id, timeout=60)
        assert final.state is not None and final.state.type == StateType.CANCELLED, final.state
        # The slot came back with the cancel, not when its lease (80 s here) ran out.
        await wait_for_free_hot_slots(prefect, timeout=CANCELLED_SLOT_BACK_WITHIN)
        await asyncio.sleep(WINDOW / 2)
        after = await prefect.read_flow_run(run.id)
        assert after.state is not None and after.state.type == StateType.CANCELLED
        names = await state_names(prefect, run.id)
        assert "Suspended" not in names and "Crashed" not in names, names


async def test_a_block_name_taken_while_a_run_waited_is_not_overwritten(
    hot_stack: LocalStack,
) -> None:
    # Both names give the block "overwrite-erp"; both runs pass the first check, because
    # neither has saved anything yet. Answered at once while they wait hot, neither runs
    # the flow again from the top: only the check right before the save stands between
    # them, and the server's unique block name decides which one keeps it.
    async with get_client() as prefect:
        await wait_for_free_hot_slots(prefect)
        runs = [
            await start_authorization("Overwrite ERP"),
            await start_authorization("overwrite-erp"),
        ]
        redirects = [await consent_redirect(prefect, run) for run in runs]
        await asyncio.gather(*(answer_through_receiver(redirect) for redirect in redirects))
        finals = [await wait_for_final(prefect, run.id, timeout=60) for run in runs]
        for run in runs:
            assert "Suspended" not in await state_names(prefect, run.id)
    done = [f for f in finals if f.state is not None and f.state.is_completed()]
    refused = [f for f in finals if f.state is not None and f.state.is_failed()]
    assert len(done) == 1 and len(refused) == 1, [f.state for f in finals]
    first, second = done[0], refused[0]
    async with httpx.AsyncClient(base_url=hot_stack.sandbox.url) as http:
        instances = (await http.get("/_sandbox/instances")).json()
    (kept,) = [i for i in instances if run_tag(first.id) in i["tags"]]
    (other,) = [i for i in instances if run_tag(second.id) in i["tags"]]
    message = (second.state.message if second.state else None) or ""
    assert "overwrite-erp" in message
    assert str(kept["id"]) in message and str(other["id"]) in message
    # The winner's block holds its instance; the other instance is
    # not orphaned: its token sits in the fallback block the message names.
    block = await ConnectorInstance.aload("overwrite-erp")
    assert block.instance_id == kept["id"]
    assert block.token.get_secret_value() == kept["token"]
    fallback = await ConnectorInstance.aload(f"overwrite-erp-{other['id']}")
    assert fallback.instance_id == other["id"]
    assert fallback.token.get_secret_value() == other["token"]
    assert f"overwrite-erp-{other['id']}" in message


async def test_zero_hot_slots_set_in_the_ui_means_every_run_suspends_at_once(
    hot_stack: LocalStack,
) -> None:
    async with get_client() as prefect:
        await prefect.update_global_concurrency_limit(
            HOT_WAIT_LIMIT, GlobalConcurrencyLimitUpdate(limit=0)
        )
        try:
            run = await start_authorization("No hot slots ERP")
            waiting, _ = await wait_for_form(prefect, run.id)
            assert waiting.state is not None and waiting.state.name == "Suspended"
            await answer_through_receiver(await consent_redirect(prefect, run))
            final = await wait_for_final(prefect, run.id, timeout=120)
            assert final.state is not None and final.state.is_completed(), final.state
            assert "Paused" not in await state_names(prefect, run.id)
        finally:
            await prefect.update_global_concurrency_limit(
                HOT_WAIT_LIMIT, GlobalConcurrencyLimitUpdate(limit=SLOTS)
            )


async def test_a_prompt_that_ended_in_its_hot_wait_is_not_asked_again_after_a_suspension(
    hot_stack: LocalStack,
) -> None:
    # An empty answer while the run waits hot shows the form again (prompt 2), which
    # waits hot and then suspends. The resumed run goes through its prompts again:
    # prompt 1 must hand back what its hot wait received, not wait on it anew.
    async with get_client() as prefect:
        await wait_for_free_hot_slots(prefect)
        run = await start_authorization("Hot then again ERP")
        waiting, _ = await wait_for_form(prefect, run.id)
        assert waiting.state is not None and waiting.state.name == "Paused"
        await prefect.resume_flow_run(run.id, run_input={})
        deadline = time.monotonic() + WINDOW + 60
        (serving,) = [process for process in hot_stack.serving if process.is_running()]
        while True:
            current = await prefect.read_flow_run(run.id)
            keys = current.empirical_policy.pause_keys or set()
            if "authorization-2-hot" in keys and not flow_run_processes(serving.pid):
                break  # prompt 2 waited hot, and its process ended with the window
            assert time.monotonic() < deadline, (current.state, keys)
            await asyncio.sleep(0.5)
        assert waits_suspended(current), current.state
        assert "authorization-1" not in keys and "authorization-2" not in keys, keys
        await answer_through_receiver(await consent_redirect(prefect, run))
        final = await wait_for_final(prefect, run.id, timeout=120)
        assert final.state is not None and final.state.is_completed(), final.state
        keys = (await prefect.read_flow_run(run.id)).empirical_policy.pause_keys or set()
        assert "authorization-1" not in keys and "authorization-3" not in keys, keys


async def test_a_page_does_not_wait_for_a_prefect_that_holds_its_answers_back(
    hot_stack: LocalStack,
) -> None:
    # The Prefect server is stopped (SIGSTOP: it accepts connections and answers nothing)
    # while the person's browser delivers the answer: the page says "still working"
    # within its bound; the answer is passed on once Prefect answers again, exactly once.
    async with get_client() as prefect:
        run = await start_authorization("Held back ERP")
        redirect = await consent_redirect(prefect, run)
    server = hot_stack.prefect.process.pid
    async with httpx.AsyncClient(timeout=60) as browser:
        os.kill(server, signal.SIGSTOP)
        try:
            started = time.monotonic()
            page = await browser.get(redirect)
            held = time.monotonic() - started
        finally:
            os.kill(server, signal.SIGCONT)
        assert page.status_code == 503 and 'data-outcome="working"' in page.text, page.text
        assert page.headers["retry-after"] == "5"
        assert ANSWER_WITHIN <= held < ANSWER_WITHIN + 10
        done = await deliver(redirect, client=browser)
        assert done.status_code == 200 and 'data-outcome="authorized"' in done.text, done.text
    async with get_client() as prefect:
        final = await wait_for_final(prefect, run.id, timeout=120)
        assert final.state is not None and final.state.is_completed(), final.state
    async with httpx.AsyncClient(base_url=hot_stack.sandbox.url) as http:
        instances = (await http.get("/_sandbox/instances")).json()
    assert len([i for i in instances if run_tag(run.id) in i["tags"]]) == 1


async def test_a_stopped_serving_process_hands_its_hot_wait_over_instead_of_cancelling_it(
    hot_stack: LocalStack,
) -> None:
    # SIGTERM to the serving process alone, as `docker stop` and a Kubernetes rollout
    # stop it: Prefect's runner would cancel the run waiting hot. It suspends instead,
    # well before its window ends, and the next serving process completes it.
    async with get_client() as prefect:
        await wait_for_free_hot_slots(prefect)
        run = await start_authorization("Handed over ERP")
        waiting, _ = await wait_for_form(prefect, run.id)
        assert waiting.state is not None and waiting.state.name == "Paused"
        paused_at = await first_pause(prefect, run.id)
        (serving,) = [process for process in hot_stack.serving if process.is_running()]
        os.kill(serving.pid, signal.SIGTERM)
        serving.popen.wait(timeout=60)
        # The serving process ended well before the window did, leaving the run suspended.
        assert time.time() - paused_at < WINDOW / 2
        current = await prefect.read_flow_run(run.id)
        assert waits_suspended(current), current.state
        names = await state_names(prefect, run.id)
        assert not {"Cancelling", "Cancelled", "Crashed"} & set(names), names
        await wait_for_free_hot_slots(prefect, timeout=CANCELLED_SLOT_BACK_WITHIN)
        hot_stack.start_serving("serve-again")
        await answer_through_receiver(await consent_redirect(prefect, run))
        final = await wait_for_final(prefect, run.id, timeout=120)
        assert final.state is not None and final.state.is_completed(), final.state
    async with httpx.AsyncClient(base_url=hot_stack.sandbox.url) as http:
        instances = (await http.get("/_sandbox/instances")).json()
    assert len([i for i in instances if run_tag(run.id) in i["tags"]]) == 1


@pytest.mark.parametrize(
    "stop", ["SIGKILL to the group", "SIGTERM to the group", "SIGKILL to it alone"]
)
async def test_a_hot_wait_whose_serving_process_is_gone_is_completed_by_the_next_one(
    hot_stack: LocalStack, stop: str
) -> None:
    # SIGKILL: the serving machine or container is lost, nobody reports anything.
    # SIGTERM to the whole group (systemd's default): the run's own process gets it too,
    # where Prefect would report the run Crashed. SIGKILL to the serving process alone (an
    # out-of-memory kill): its fork server, the run process's parent, lives on, and the
    # orphaned run process ends by itself. Each way the run waits on, suspended, and the
    # answer completes it on the next serving process, once.
    async with get_client() as prefect:
        await wait_for_free_hot_slots(prefect)
        run = await start_authorization(f"Lost serving ERP {stop.split()[0]} {stop[-5:]}")
        waiting, _ = await wait_for_form(prefect, run.id)
        assert waiting.state is not None and waiting.state.name == "Paused"
        (serving,) = [process for process in hot_stack.serving if process.is_running()]
        waiting_process = await _the_only_flow_run_process(serving.pid)
        if stop == "SIGKILL to the group":
            serving.kill()
        elif stop == "SIGKILL to it alone":
            os.kill(serving.pid, signal.SIGKILL)
            serving.popen.wait(timeout=60)
        else:
            os.killpg(serving.pid, signal.SIGTERM)
            serving.popen.wait(timeout=60)
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{waiting_process}"):
            assert time.monotonic() < deadline, "the run's process did not end"
            await asyncio.sleep(0.2)
        serving.stop()
        current = await prefect.read_flow_run(run.id)
        assert waits_suspended(current), current.state
        names = await state_names(prefect, run.id)
        assert not {"Cancelling", "Cancelled", "Crashed"} & set(names), names
        hot_stack.start_serving(f"serve-after-{stop.split()[0].lower()}-{stop[-5:]}")
        await answer_through_receiver(await consent_redirect(prefect, run))
        final = await wait_for_final(prefect, run.id, timeout=120)
        assert final.state is not None and final.state.is_completed(), final.state
    async with httpx.AsyncClient(base_url=hot_stack.sandbox.url) as http:
        instances = (await http.get("/_sandbox/instances")).json()
    assert len([i for i in instances if run_tag(run.id) in i["tags"]]) == 1


async def test_a_hot_wait_outlives_its_fork_server_killed_alone(hot_stack: LocalStack) -> None:
    # An out-of-memory kill may pick the fork server, the parent of every run's process.
    # The run waiting hot goes on in its process: not reported Crashed by the serving
    # process (multiprocessing alone reads its child as ended, code 255), it takes the
    # answer back itself and completes, once; the next run starts from a new fork server.
    async with get_client() as prefect:
        await wait_for_free_hot_slots(prefect)
        run = await start_authorization("Fork server lost ERP")
        waiting, _ = await wait_for_form(prefect, run.id)
        assert waiting.state is not None and waiting.state.name == "Paused"
        (serving,) = [process for process in hot_stack.serving if process.is_running()]
        waiting_process = await _the_only_flow_run_process(serving.pid)
        (fork_server,) = _fork_servers(serving.pid)
        os.kill(fork_server, signal.SIGKILL)
        await asyncio.sleep(2)  # the serving process would have reported the crash by now
        assert os.path.exists(f"/proc/{waiting_process}")
        names = await state_names(prefect, run.id)
        assert not {"Crashed", "Cancelling", "Cancelled"} & set(names), names
        await answer_through_receiver(await consent_redirect(prefect, run))
        final = await wait_for_final(prefect, run.id, timeout=60)
        assert final.state is not None and final.state.is_completed(), final.state
        names = await state_names(prefect, run.id)
        resumed = names[names.index("Resuming") + 1 :]
        assert resumed[:2] == ["Pending", "Running"] and "Submitting" not in resumed, names
        assert "Crashed" not in names, names
        # The next run's process comes from a new fork server.
        after = await start_authorization("After the fork server ERP")
        await wait_for_form(prefect, after.id)
        (new_fork_server,) = _fork_servers(serving.pid)
        assert new_fork_server != fork_server
        await answer_through_receiver(await consent_redirect(prefect, after))
        final = await wait_for_final(prefect, after.id, timeout=60)
        assert final.state is not None and final.state.is_completed(), final.state
    async with httpx.AsyncClient(base_url=hot_stack.sandbox.url) as http:
        instances = (await http.get("/_sandbox/instances")).json()
    for each in (run, after):
        assert len([i for i in instances if run_tag(each.id) in i["tags"]]) == 1


async def test_a_run_whose_serving_process_dies_mid_step_still_completes(
    hot_stack: LocalStack,
) -> None:
    # SIGKILL to the serving process alone (an out-of-memory kill) while the answered run
    # waits for the platform's answer to its instance's creation: the run goes on and
    # completes, and its log says nobody supervises it any more. (A serving process's
    # runs write where it writes, not into a pipe it reads: `test_workers.py` has the
    # pipe a worker's death breaks.)
    async with (
        get_client() as prefect,
        httpx.AsyncClient(base_url=hot_stack.sandbox.url) as sandbox,
    ):
        await wait_for_free_hot_slots(prefect)
        (serving,) = [process for process in hot_stack.serving if process.is_running()]

        def kill_serving_alone() -> None:
            os.kill(serving.pid, signal.SIGKILL)
            serving.popen.wait(timeout=60)

        try:
            await completes_when_its_supervisor_dies_mid_step(
                prefect, sandbox, "Serving lost mid-step ERP", kill_serving_alone
            )
        finally:
            serving.stop()
            hot_stack.start_serving("serve-after-mid-step")


def _fork_servers(serving_pid: int) -> list[int]:
    """The serving process's fork servers (one while it serves with the fork server)."""
    return [pid for pid in children(serving_pid) if b"forkserver" in command_line(pid)]


async def _the_only_flow_run_process(serving_pid: int) -> int:
    """The serving process's one flow-run process, once it has only one: a run of a
    downstream flow that an earlier test's instance triggered may still be running
    beside the one waiting hot (it ends in about a second; the hot wait lasts its window).
    """
    deadline = time.monotonic() + 15
    while len(processes := flow_run_processes(serving_pid)) != 1:
        assert time.monotonic() < deadline, f"flow-run processes: {processes}"
        await asyncio.sleep(0.1)
    return processes[0]
