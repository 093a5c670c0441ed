"""Fifty authorizations waiting at once, answered in random order through the callback receiver."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest
from prefect.client.orchestration import PrefectClient

from devstack.runs import wait_for_final
from tests.e2e.conftest import SandboxAdmin, consent_redirect, run_tag, start_authorization

pytestmark = pytest.mark.e2e

WAITING = 50


@pytest.mark.timeout(1800)
async def test_fifty_waiting_authorizations_each_get_their_own_instance(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    names = [f"Concurrent {number:02d}" for number in range(WAITING)]
    started = time.monotonic()
    runs = await asyncio.gather(*(start_authorization(name) for name in names))
    # Everyone opens their own link (the runs are all suspended at this point).
    redirects = await asyncio.gather(*(consent_redirect(prefect, run, timeout=900) for run in runs))
    print(f"{WAITING} runs waiting after {time.monotonic() - started:.0f} s")
    order = list(range(WAITING))
    random.Random(20261128).shuffle(order)

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=WAITING)) as http:

        async def answer(index: int) -> int:
            await asyncio.sleep(random.random() * 2)  # the answers trickle in, out of order
            return (await http.get(redirects[index])).status_code

        statuses = await asyncio.gather(*(answer(index) for index in order))
    assert statuses == [200] * WAITING

    answered = time.monotonic()
    finals = await asyncio.gather(*(wait_for_final(prefect, run.id, timeout=900) for run in runs))
    print(f"{WAITING} runs completed {time.monotonic() - answered:.0f} s after the answers")
    assert [final.state.type.value for final in finals if final.state] == ["COMPLETED"] * WAITING
    everything = await sandbox.instances()
    for run, name in zip(runs, names, strict=True):
        created = [item for item in everything if run_tag(run.id) in item["tags"]]
        # Exactly one instance per run, and the run's own: no answer reached another run.
        assert [item["name"] for item in created] == [name]
