"""Serve the project's deployments from this process: `python -m deployments.serve`.

The deployments are those of `deployments/prefect.yaml` (names, parameters,
schedules, triggers), so serving locally and `prefect deploy --all` register the
same four. Runs are executed in subprocesses of this one. A run that waits for an
authorization suspends and gives its process back; whichever serving process (or
worker) is up when the answer arrives carries it on.
"""

from __future__ import annotations

import argparse

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from deployments.spec import DeploymentSpec, load_specs

AUTHENTICATE_DEPLOYMENT = "authenticate-infusionsoft-erp"
REAUTHORIZE_DEPLOYMENT = "reauthorize-connector-instance"
VERIFY_DEPLOYMENT = "verify-connector-instances"
EXPORT_DEPLOYMENT = "export-connector-resource"


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


def main(argv: list[str] | None = None) -> None:
    """Serve every deployment until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="Concurrent runs at most.")
    args = parser.parse_args(argv)
    serve(*build_deployments(), limit=args.limit)


if __name__ == "__main__":
    main()
