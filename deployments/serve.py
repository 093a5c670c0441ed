"""Serve the project's deployments from this process: `python -m deployments.serve`.

Runs are executed in subprocesses of this one. A run that waits for an
authorization suspends and gives its process back; whichever serving process (or
worker) is up when the answer arrives carries it on.
"""

from __future__ import annotations

import argparse

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from flows.authenticate import authenticate_connector_instance

AUTHENTICATE_DEPLOYMENT = "authenticate-infusionsoft-erp"


def build_deployments() -> list[RunnerDeployment]:
    """The deployments of the project, as served locally."""
    return [
        authenticate_connector_instance.to_deployment(
            name=AUTHENTICATE_DEPLOYMENT,
            description=(
                "Authorize a new Infusionsoft ERP instance in SAP Open Connectors: the run "
                "shows a consent link, waits (suspended) for the account owner's approval, "
                "then creates the instance and saves its token in a block."
            ),
            tags=["open-connectors", "oauth"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    """Serve every deployment until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="Concurrent runs at most.")
    args = parser.parse_args(argv)
    serve(*build_deployments(), limit=args.limit)


if __name__ == "__main__":
    main()
