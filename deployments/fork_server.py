"""Flow-run processes forked from a warm interpreter instead of started cold.

`prefect.serve` runs each flow run in a new interpreter (multiprocessing's "spawn"
start method): seconds of importing Prefect and the flows before the run's first
line, and an authorization that suspends needs two such processes (until the link,
and after the answer). `use_fork_server()` makes the serving process ask
multiprocessing's fork server instead: one process that imported Prefect and the
flows once, and forks a child per flow run (a fork takes milliseconds). Each child
then runs exactly what Prefect would have run in the new interpreter (the same
pickled call, environment and control channel).

Forking is safe here because the fork server only imports: it starts no thread,
event loop, client or connection (Python's own reason for the start method; it is
the default on Linux from Python 3.14). It ignores SIGTERM and SIGHUP, which a stop
of the whole process group sends it too (`deployments.fork_server_signals`): its
death would make Prefect report every running run as crashed. Where the platform has no fork server
(Windows), or with `OC_FORK_SERVER=0`, runs start as Prefect starts them.

A SIGKILL cannot be ignored (an out-of-memory kill may pick the fork server): its
runs' processes are followed to their own end (`deployments.fork_server_children`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
from collections.abc import Mapping
from typing import Any

import prefect.flow_engine

SETTING = "OC_FORK_SERVER"
# Imported once by the fork server, so that no flow-run process imports them again;
# first, what keeps it alive through a SIGTERM sent to the whole process group; the
# process class each run's process unpickles; last, the TLS contexts every run would
# otherwise build for itself.
PRELOAD = (
    "deployments.fork_server_signals",
    "prefect",
    "prefect.flow_engine",
    "deployments.fork_server_children",
    "prefect.runner",
    "flows",
    "deployments.fork_server_warmup",
)


class _SpawnFromForkServer:
    """`multiprocessing` as Prefect's flow engine sees it: "spawn" served by the fork server.

    Prefect asks for the "spawn" context by name (`run_flow_in_subprocess`); every
    other attribute is multiprocessing's own.
    """

    def get_context(self, method: str | None = None) -> multiprocessing.context.BaseContext:
        """The fork server's context where Prefect asks for "spawn"."""
        if method == "spawn":
            from deployments.fork_server_children import CONTEXT  # Linux only

            return CONTEXT
        return multiprocessing.get_context(method)

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether flow runs fork from the fork server: on unless `OC_FORK_SERVER` is 0/false/off."""
    value = environ.get(SETTING, "").strip().lower()
    return value not in {"0", "false", "off", "no"} and (
        "forkserver" in multiprocessing.get_all_start_methods()
    )


def use_fork_server(preload: tuple[str, ...] = PRELOAD) -> bool:
    """Start this process's flow runs from the fork server; True when it is in use.

    The fork server starts now and imports `preload` once, so the first run does not
    wait for it either. It exits when this process does (one killed is started again).
    """
    if not enabled():
        return False
    multiprocessing.set_forkserver_preload(list(preload))
    multiprocessing.forkserver.ensure_running()
    prefect.flow_engine.multiprocessing = _SpawnFromForkServer()  # type: ignore[assignment]
    return True
