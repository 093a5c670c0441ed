"""Serve the project's deployments from this process: `python -m deployments.serve`.

The deployments are those of `deployments/prefect.yaml` (names, parameters,
schedules, triggers), so serving locally and `prefect deploy --all` register the
same deployments. Each is served with its flow object (`Runner.add_flow`, as
`flow.serve` does), so a run executes in a subprocess that needs no import of its
code; that subprocess is forked from a warm interpreter (`deployments.fork_server`)
rather than started cold. A run that waits for an authorization suspends and gives
its process back; whichever serving process (or worker) is up when the answer
arrives carries it on. Stopped (SIGTERM), it first has its hot waits suspend
(`deployments.hand_over`), so a restart cancels none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import TerminationSignal
from prefect.logging import get_logger
from prefect.types.entrypoint import EntrypointType

from deployments.fork_server import use_fork_server
from deployments.hand_over import HandingOverRunner
from deployments.prefect_tls import share_tls_contexts
from deployments.spec import DeploymentSpec, load_specs
from flows.steps.hot_wait import HotWaitSettings

POLL_SETTING = "PREFECT_RUNNER_POLL_FREQUENCY"
# Prefect's default is 10 s: a new run, and a run resumed by the person's answer,
# would wait 5 s on average before a runner picks it up. Every 2 s costs the idle
# server and runner about one percent of a core more (README, "Performance").
DEFAULT_POLL_SECONDS = 2.0
# Runs this process holds at once beyond the hot waits: a few per core keep the cores
# busy; more only add interpreter starts competing for them (200 answered runs started
# at once on 2 cores ran at a load average of 50; README, "Performance").
RUNS_PER_CORE = 2
# Worker threads when runs are not bounded, and those kept for Prefect's own work.
UNBOUNDED_RUNS = 1000
THREADS_BESIDES = 20


def deployment_options(spec: DeploymentSpec) -> dict[str, Any]:
    """How `prefect.yaml` configures a deployment, as Prefect's serving calls take it."""
    return {
        "name": spec.name,
        "description": spec.description,
        "tags": spec.tags,
        "parameters": spec.parameters,
        "schedules": spec.build_schedules() or None,
        "triggers": list(spec.build_triggers()) or None,
        "concurrency_limit": spec.concurrency_limit,
        "entrypoint_type": EntrypointType.MODULE_PATH,
    }


def to_runner_deployment(spec: DeploymentSpec) -> RunnerDeployment:
    """A deployment of `prefect.yaml`, as served."""
    return spec.load_flow().to_deployment(**deployment_options(spec))


def build_deployments() -> list[RunnerDeployment]:
    """The deployments of the project, as served locally."""
    return [to_runner_deployment(spec) for spec in load_specs()]


def poll_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """How often the runner looks for new and resumed runs.

    `PREFECT_RUNNER_POLL_FREQUENCY` when it is set, else `DEFAULT_POLL_SECONDS`.
    """
    value = environ.get(POLL_SETTING, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_POLL_SECONDS
    except ValueError:
        raise SystemExit(f"{POLL_SETTING} must be a number of seconds; got {value!r}.") from None
    return seconds if seconds > 0 else DEFAULT_POLL_SECONDS


def default_limit(hot_waits: int | None = None, cores: int | None = None) -> int:
    """Runs this process holds at once unless `--limit` says otherwise.

    The hot-wait slots (each holds its process for the hot window) plus
    `RUNS_PER_CORE` per core for the rest: new runs reaching their link, answered runs
    finishing. Runs beyond it wait on the server, Scheduled or resumed, until a
    process is free; a suspended run holds no slot.
    """
    hot = HotWaitSettings().limit if hot_waits is None else hot_waits
    return hot + RUNS_PER_CORE * max(cores or os.cpu_count() or 1, 1)


def main(argv: list[str] | None = None) -> None:
    """Serve every deployment until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="Runs at once at most (default: OC_HOT_WAIT_LIMIT + "
        f"{RUNS_PER_CORE} per core; 0 for no limit).",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help=f"Seconds between looks for new and resumed runs (default: {POLL_SETTING} if "
        f"set, else {DEFAULT_POLL_SECONDS:g}).",
    )
    args = parser.parse_args(argv)
    seconds = args.poll_seconds if args.poll_seconds and args.poll_seconds > 0 else poll_seconds()
    limit = default_limit() if args.limit is None else (args.limit or None)
    serve(load_specs(), limit=limit, query_seconds=seconds)


def serve(specs: list[DeploymentSpec], *, limit: int | None, query_seconds: float) -> None:
    """Register the deployments and run their flow runs until interrupted (as `prefect.serve`)."""
    share_tls_contexts()
    forked = use_fork_server()
    # Schedules stay on when this process stops: other serving processes (or workers) serve
    # the same deployments, and Prefect's default would pause them for all.
    runner = HandingOverRunner(limit=limit, query_seconds=query_seconds, pause_on_shutdown=False)
    for spec in specs:
        runner.add_flow(spec.load_flow(), **deployment_options(spec))
    names = "\n".join(f"  {spec.name}" for spec in specs)
    print(
        f"Serving {len(specs)} deployments:\n{names}\nRuns at once: "
        f"{limit if limit else 'no limit'}; their processes "
        f"{'fork from a warm fork server' if forked else 'start as new interpreters'}.\n"
        f"Your deployments are being served and polling for scheduled runs every "
        f"{query_seconds:g} s.",
        flush=True,
    )
    try:
        asyncio.run(_run(runner, limit))
    except (KeyboardInterrupt, TerminationSignal) as exc:
        get_logger("deployments.serve").info("%s: stopped serving.", type(exc).__name__)


async def _run(runner: HandingOverRunner, limit: int | None) -> None:
    """Start the runner with a worker thread for every run it may hold.

    Prefect waits for each run's process in a worker thread (`process.join`), and
    anyio lends 40 at most by default: beyond that, the ends of runs would go unseen.
    """
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = max(limiter.total_tokens, (limit or UNBOUNDED_RUNS) + THREADS_BESIDES)
    await runner.start()


if __name__ == "__main__":
    main()
