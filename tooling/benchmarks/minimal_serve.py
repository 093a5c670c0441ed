"""Serve the minimal floor flow: `python -m tooling.benchmarks.minimal_serve`.

The same setup as `deployments.serve`: `prefect.serve` of a deployment with a
module-path entrypoint, unlimited, in its own process, with the stack's
environment (so the same `PREFECT_RUNNER_POLL_FREQUENCY`).
"""

from __future__ import annotations

from prefect import serve
from prefect.types.entrypoint import EntrypointType

from tooling.benchmarks.minimal_flow import DEPLOYMENT_NAME, minimal_consent


def main() -> None:
    """Serve the floor's deployment until interrupted."""
    deployment = minimal_consent.to_deployment(
        name=DEPLOYMENT_NAME,
        description="Benchmark floor: one HTTP call, suspend, one block.",
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    serve(deployment, limit=None)


if __name__ == "__main__":
    main()
