"""After the whole end-to-end suite: no secret anywhere the runs left something behind."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.leak_audit import POSTGRESQL_DUMP, LeakAudit, dumped_rows
from tooling.devstack.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.audit_last]


async def test_no_secret_was_left_behind_by_any_run(
    sandbox_blocks: LocalStack, leak_audit: LeakAudit
) -> None:
    await asyncio.sleep(3)  # the server writes the last logs and events asynchronously
    await leak_audit.record(sandbox_blocks)
    audited = leak_audit.stacks
    # The audit looked at real material: several stacks' databases with runs in them
    # (SQLite's file, or the dump a PostgreSQL stack wrote when it stopped).
    assert all(
        (stack.home / "prefect.db").exists()
        or dumped_rows(stack.home / POSTGRESQL_DUMP, "flow_run") > 0
        for stack in audited
    )
    assert sum(len(stack.secrets) for stack in audited) >= 10
    findings = leak_audit.findings()
    assert findings == [], "Secrets found:\n" + "\n".join(findings)
