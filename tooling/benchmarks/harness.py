"""The stack a benchmark runs on: the local stack, ours served, the minimal floor served alike.

Both serving processes are started the same way (a `prefect.serve` process with a
module-path entrypoint and the stack's environment, so the same
`PREFECT_RUNNER_POLL_FREQUENCY`), and both are stopped by their process id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TypeVar
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from pydantic import SecretStr

from blocks import DEFAULT_STATE_KEY_BLOCK, StateSigningKey
from deployments.fork_server import SETTING as FORK_SERVER_SETTING
from deployments.serve import DEFAULT_POLL_SECONDS
from flows.steps.names import AUTHENTICATE_DEPLOYMENT, AUTHENTICATE_FLOW, full_name
from tooling.benchmarks.deadline import Deadline
from tooling.benchmarks.machine import describe
from tooling.benchmarks.minimal_flow import DEPLOYMENT_NAME as MINIMAL_DEPLOYMENT
from tooling.benchmarks.minimal_flow import FLOW_NAME as MINIMAL_FLOW
from tooling.benchmarks.minimal_flow import STATE_KEY_ENV
from tooling.benchmarks.report import Section, render
from tooling.devstack.processes import ManagedProcess
from tooling.devstack.proctree import flow_run_processes
from tooling.devstack.serving import start_serving
from tooling.devstack.stack import SERVED_DEPLOYMENTS, Database, LocalStack, local_stack
from tooling.sandbox.config import SandboxConfig

OURS_DEPLOYMENT = full_name(AUTHENTICATE_FLOW, AUTHENTICATE_DEPLOYMENT)
MINIMAL = f"{MINIMAL_FLOW}/{MINIMAL_DEPLOYMENT}"
EXPORT_TRIGGER = "export-connector-resource__automation_1"
SERVE_START_TIMEOUT = 120.0
T = TypeVar("T")
# What `python -m deployments.serve` uses unless told otherwise; set for both serving
# processes through PREFECT_RUNNER_POLL_FREQUENCY (Prefect reads it as whole seconds).
DEFAULT_POLL_FREQUENCY = int(DEFAULT_POLL_SECONDS)
# Printed once the runner has registered its deployments and starts polling.
SERVING_READY = "polling for scheduled runs"


PART_SERVER = "Prefect server"
PART_SERVING = "serving processes, with the runs' processes"
PART_HELPERS = "callback receiver and sandboxes"
PART_DATABASE = "PostgreSQL"


@dataclass
class Bench:
    """A running benchmark stack.

    Attributes:
        stack: The local stack (server, sandbox, receiver when asked).
        poll_frequency: `PREFECT_RUNNER_POLL_FREQUENCY` of both serving processes.
        baseline: Another copy of the project (an older checkout) to measure as well.
        ours_variant: `current` or `baseline`: which copy serves ours now.
        ours: The process serving the project's deployments.
        more_ours: Further processes serving them (`servers` - 1), as a second worker would.
        servers: How many processes serve the project's deployments.
        minimal: The process serving the minimal floor, when asked.
        deployment_ids: Deployment ids by `flow/deployment` name.
        extra: Further processes of a part's own (the export part's sandbox).
        state_key: The state key both floors sign with (saved as the state key block).
        keep_logs: Keep the stack's directory afterwards: a measurement saw failures, and
            the logs there explain them.
        fork_server: Ours forks each run from the fork server (the product's default); off,
            each run's process is a new interpreter, as Prefect starts runs.
    """

    stack: LocalStack
    poll_frequency: int
    baseline: Path | None = None
    ours_variant: str = "current"
    ours: ManagedProcess | None = None
    more_ours: list[ManagedProcess] = field(default_factory=list)
    servers: int = 1
    minimal: ManagedProcess | None = None
    deployment_ids: dict[str, UUID] = field(default_factory=dict)
    extra: list[ManagedProcess] = field(default_factory=list)
    state_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    keep_logs: bool = False
    fork_server: bool = True

    def roots(self) -> list[int]:
        """Every process the benchmark started (their descendants are theirs too)."""
        return [pid for pids in self.parts().values() for pid in pids]

    def parts(self) -> dict[str, list[int]]:
        """The processes the benchmark started, by part of the stack (each with its
        descendants: a serving process's runs are its own)."""
        stack = self.stack
        serving = [self.ours, self.minimal, *self.more_ours]
        receiver = stack.receiver.process if stack.receiver else None
        helpers = [stack.sandbox.process, receiver, *self.extra]
        database = [stack.postgresql.process if stack.postgresql else None]
        groups = {
            PART_SERVER: [stack.prefect.process],
            PART_SERVING: serving,
            PART_HELPERS: helpers,
            PART_DATABASE: database,
        }
        return {
            part: [process.pid for process in processes if process and process.is_running()]
            for part, processes in groups.items()
        }

    def serving_pids(self) -> list[int]:
        """The serving processes."""
        processes = [self.ours, *self.more_ours, self.minimal]
        return [p.pid for p in processes if p is not None and p.is_running()]

    def flow_run_processes(self) -> int:
        """How many flow run subprocesses the serving processes have now."""
        return sum(len(flow_run_processes(pid)) for pid in self.serving_pids())

    async def wait_for_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no flow run subprocess is alive (a suspended run's process has exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.flow_run_processes() == 0:
                return True
            await asyncio.sleep(0.1)
        return False

    def serve_ours(self, variant: str = "current") -> ManagedProcess:
        """(Re)start the process serving the project's deployments.

        Args:
            variant: `current` (this checkout) or `baseline` (the copy at `baseline`,
                served from its own directory, so that its modules are imported first).
        """
        for process in (self.ours, *self.more_ours):
            if process is not None:
                process.stop()
        self.more_ours = []
        cwd = self.baseline if variant == "baseline" else None
        if variant == "baseline" and cwd is None:
            raise ValueError("No baseline directory was given.")
        self.ours = None
        # Set either way: a fork server turned off in the caller's environment is not ours.
        env = self._env() | {FORK_SERVER_SETTING: "1" if self.fork_server else "0"}
        for number in range(max(self.servers, 1)):
            # Kept as soon as it runs: if a later one fails to start, `stop` ends this one.
            process = _start_serving(
                self.stack,
                "deployments.serve",
                SERVED_DEPLOYMENTS,
                env,
                name=f"serve-ours-{variant}" + (f"-{number + 1}" if number else ""),
                cwd=cwd,
            )
            if self.ours is None:
                self.ours = process
            else:
                self.more_ours.append(process)
        self.ours_variant = variant
        assert self.ours is not None  # at least one was started
        return self.ours

    async def use_ours(self, variant: str, client: PrefectClient) -> None:
        """Make `variant` the copy serving ours (serving again re-creates the export trigger)."""
        if self.ours_variant != variant or self.ours is None:
            self.serve_ours(variant)
            await pause_export_trigger(client)

    async def use_fork_server(self, on: bool, client: PrefectClient) -> None:
        """Serve ours again with the fork server on or off (see `fork_server`)."""
        if self.fork_server != on:
            self.fork_server = on
            self.serve_ours(self.ours_variant)
            await pause_export_trigger(client)

    def serve_minimal(self) -> ManagedProcess:
        """(Re)start the process serving the minimal floor (signing with `state_key`)."""
        if self.minimal is not None:
            self.minimal.stop()
        env = self._env()
        env[STATE_KEY_ENV] = self.state_key
        self.minimal = _start_serving(
            self.stack,
            "tooling.benchmarks.minimal_serve",
            [(MINIMAL_FLOW, MINIMAL_DEPLOYMENT)],
            env,
            name="serve-minimal",
        )
        return self.minimal

    def set_poll_frequency(self, seconds: int) -> None:
        """Serve again with another runner poll frequency (whatever was served)."""
        self.poll_frequency = seconds
        if self.ours is not None:
            self.serve_ours(self.ours_variant)
        if self.minimal is not None:
            self.serve_minimal()

    async def prepare(self, client: PrefectClient) -> None:
        """Save the sandbox blocks, pause the export trigger, look up the deployment ids."""
        await self.stack.save_sandbox_blocks()
        # The receiver checks every state with the state key block: both floors sign with it.
        await StateSigningKey(current_key=SecretStr(self.state_key)).asave(
            DEFAULT_STATE_KEY_BLOCK, overwrite=True
        )
        names = [OURS_DEPLOYMENT] if self.ours else []
        names += [MINIMAL] if self.minimal else []
        for name in names:
            self.deployment_ids[name] = (await client.read_deployment_by_name(name)).id
        if self.ours is not None:
            await pause_export_trigger(client)

    def stop(self) -> None:
        """Stop the serving processes (the stack stops the rest)."""
        for process in (*self.extra, self.minimal, *self.more_ours, self.ours):
            if process is not None:
                process.stop()

    def _env(self) -> dict[str, str]:
        env = dict(self.stack.env)
        env["PREFECT_RUNNER_POLL_FREQUENCY"] = str(self.poll_frequency)
        return env


async def pause_export_trigger(client: PrefectClient, timeout: float = 30) -> None:
    """Pause the export deployment's trigger: every new instance would start an export.

    Exports running in the background would compete with what is measured. The
    trigger is created by the serving process right after the deployments, so it is
    looked for a little while.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        automations = await client.read_automations_by_name(EXPORT_TRIGGER)
        if automations:
            for automation in automations:
                if automation.enabled:
                    await client.pause_automation(automation.id)
            return
        await asyncio.sleep(0.5)


@contextlib.contextmanager
def bench_stack(
    name: str,
    *,
    poll_frequency: int = DEFAULT_POLL_FREQUENCY,
    ours: bool = True,
    minimal: bool = True,
    receiver: bool = True,
    sandbox_config: SandboxConfig | None = None,
    lifetime: float = 3600,
    keep: bool = False,
    baseline: Path | None = None,
    database: Database | None = None,
    environment: dict[str, str] | None = None,
    servers: int = 1,
) -> Iterator[Bench]:
    """Start the stack and the serving processes; stop everything on exit.

    Args:
        name: A short name for the stack's directory.
        poll_frequency: The runner poll frequency of both serving processes.
        ours: Serve the project's deployments.
        minimal: Serve the minimal floor.
        receiver: Start the callback receiver.
        sandbox_config: The sandbox's configuration (random secrets by default).
        lifetime: Seconds after which the sandbox and receiver stop by themselves.
        keep: Keep the stack's directory (logs, database) afterwards.
        baseline: Another copy of the project to measure as well (see `Bench`).
        database: `sqlite` or `postgresql` (a throwaway cluster), as for `local_stack`.
        environment: Variables for every process but the server (as for `local_stack`).
        servers: Processes serving the project's deployments (two stand for two workers).
    """
    home = Path(tempfile.mkdtemp(prefix=f"oc-bench-{name}-"))
    ok = False
    bench: Bench | None = None
    try:
        with local_stack(
            home,
            serve=False,
            receiver=receiver,
            sandbox_config=sandbox_config,
            lifetime=lifetime,
            database=database,
            environment=environment,
            quick_pause_expiry=False,  # Prefect's default look every 5 s, as users run it
        ) as stack:
            bench = Bench(
                stack=stack, poll_frequency=poll_frequency, baseline=baseline, servers=servers
            )
            try:
                if ours:
                    bench.serve_ours()
                if minimal:
                    bench.serve_minimal()
                yield bench
                ok = True
            finally:
                bench.stop()
    finally:
        if keep or not ok or (bench is not None and bench.keep_logs):
            print(f"Benchmark stack directory (logs): {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def stopped_cleanly() -> Iterator[None]:
    """Turn SIGTERM into `SystemExit`, so that every started process is stopped on the way out."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_alone(
    name: str,
    deadline_minutes: float,
    measure: Callable[[Bench, Deadline], Awaitable[T]],
    section: Callable[[T], Section],
    *,
    poll_frequency: int = DEFAULT_POLL_FREQUENCY,
    minimal: bool = True,
    receiver: bool = True,
    keep: bool = False,
    baseline: Path | None = None,
    database: Database | None = None,
    environment: dict[str, str] | None = None,
    servers: int = 1,
) -> int:
    """Run one benchmark on its own stack, bounded by the deadline, and print its table.

    Args:
        name: The benchmark's name (the stack's directory).
        deadline_minutes: The whole run's bound.
        measure: The measurement, given the stack and the deadline.
        section: Its rows and notes.
        poll_frequency, minimal, receiver, keep, baseline, database, environment, servers: As
            for `bench_stack`.
    """
    deadline = Deadline(deadline_minutes * 60)
    machine = describe("PostgreSQL" if database == "postgresql" else "SQLite")
    with (
        stopped_cleanly(),
        bench_stack(
            name,
            poll_frequency=poll_frequency,
            minimal=minimal,
            receiver=receiver,
            lifetime=deadline.remaining() + 600,
            keep=keep,
            baseline=baseline,
            database=database,
            environment=environment,
            servers=servers,
        ) as bench,
    ):
        result = asyncio.run(measure(bench, deadline))
    print(render([section(result)], machine))
    return 0


def _start_serving(
    stack: LocalStack,
    module: str,
    deployments: list[tuple[str, str]],
    env: dict[str, str],
    *,
    name: str,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `python -m <module>` (in `cwd`) and wait until it polls for its deployments."""
    # A fresh log per start: readiness is read from it, and a restarted runner must
    # not be taken for ready by its predecessor's lines.
    log_path = stack.home / "logs" / f"{name}-{time.strftime('%H%M%S')}-{os.urandom(2).hex()}.log"
    return start_serving(
        env,
        stack.home,
        stack.prefect.api_url,
        deployments,
        name=name,
        module=module,
        cwd=cwd or Path.cwd(),
        log_path=log_path,
        ready_line=SERVING_READY,
        timeout=SERVE_START_TIMEOUT,
    )
