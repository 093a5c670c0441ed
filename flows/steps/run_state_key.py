"""The state key as the running flow run uses it: read once per run and process.

A run signs its consent link's state with the key and checks the answer's state
with it, in the same process (the run's first process, or the one that resumes a
suspended run re-reads it for the check). One read serves both: a block read by
name is the dearest request a run makes of the Prefect server, and the check then
uses the very key that signed, as the wait has always held its key from its start.
"""

from __future__ import annotations

from uuid import UUID

from blocks import StateSigningKey
from flows.steps.run_identity import current_flow_run_id

# The last run's key in this process; another run (a direct run, a test) reads its own.
_loaded: tuple[UUID, StateSigningKey] | None = None


async def run_state_key() -> StateSigningKey:
    """The state key block, read (or created on first use) once per flow run and process.

    Raises:
        RuntimeError: Called outside a flow run.
    """
    global _loaded
    run_id = current_flow_run_id()
    loaded = _loaded
    if loaded is not None and loaded[0] == run_id:
        return loaded[1]
    key = await StateSigningKey.aload_or_create()
    _loaded = (run_id, key)
    return key
