"""Deployment steps that Prefect runs in its own interpreter (`prefect.yaml`'s build section).

A step named by its dotted path is imported by `prefect deploy` itself, so it sees
the environment that runs Prefect, whichever `python` comes first on `PATH`.
"""

from __future__ import annotations

from pathlib import Path

# `deployments` sits beside `flows` (the deployments' entrypoints) in the project's root,
# and beside it in `site-packages` when the project is installed from its wheel.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_directory() -> dict[str, str]:
    """Where the project's packages live on this machine, for the pull step.

    Returns:
        `{"directory": <path>}`: with the step's `id: project`, `prefect.yaml` reads it
        as `{{ project.directory }}`.
    """
    return {"directory": str(PROJECT_ROOT)}
