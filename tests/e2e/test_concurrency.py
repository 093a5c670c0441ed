"""Twenty authorizations waiting at once, answered in random order through the callback receiver."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import PrefectClient

from tests.e2e.conftest import SandboxAdmin
from tests.e2e.scenarios import concurrent_answers

pytestmark = pytest.mark.e2e

WAITING = 20


@pytest.mark.timeout(1800)
async def test_twenty_waiting_authorizations_each_get_their_own_instance(
    prefect: PrefectClient, sandbox: SandboxAdmin
) -> None:
    names = [f"Concurrent {number:02d}" for number in range(WAITING)]
    await concurrent_answers(prefect, sandbox, names, seed=20261128)
