"""Serve the project's deployments from this process: `python -m deployments.serve`.

The deployments are those of `deployments/prefect.yaml` (names, parameters,
schedules, triggers), so serving locally and `prefect deploy --all` register the
same deployments. Runs are executed in subprocesses of this one. A run that waits for an
authorization suspends and gives its process back; whichever serving process (or
worker) is up when the answer arrives carries it on.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from deployments.spec import DeploymentSpec, load_specs

POLL_SETTING = "PREFECT_RUNNER_POLL_FREQUENCY"
# Prefect's default is 10 s: a new run, and a run resumed by the person's answer,
# would wait 5 s on average before a runner picks it up. Every 2 s costs the idle
# server and runner about one percent of a core more (README, "Performance").
DEFAULT_POLL_SECONDS = 2.0


def to_runner_deployment(spec: DeploymentSpec) -> RunnerDeployment:
    """A deployment of `prefect.yaml`, ready to serve."""
    return spec.load_flow().to_deployment(
        name=spec.name,
        description=spec.description,
        tags=spec.tags,
        parameters=spec.parameters,
        schedules=spec.build_schedules() or None,
        triggers=list(spec.build_triggers()) or None,
        concurrency_limit=spec.concurrency_limit,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


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


def main(argv: list[str] | None = None) -> None:
    """Serve every deployment until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="Concurrent runs at most.")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help=f"Seconds between looks for new and resumed runs (default: {POLL_SETTING} if "
        f"set, else {DEFAULT_POLL_SECONDS:g}).",
    )
    args = parser.parse_args(argv)
    seconds = args.poll_seconds if args.poll_seconds and args.poll_seconds > 0 else poll_seconds()
    serve(*build_deployments(), limit=args.limit, query_seconds=seconds)


if __name__ == "__main__":
    main()
