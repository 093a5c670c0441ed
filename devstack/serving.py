"""The process that serves the project's deployments (`python -m deployments.serve`)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from devstack.processes import ManagedProcess, start_process, wait_until

SERVE_START_TIMEOUT = 90.0


def start_serving(
    env: dict[str, str],
    work_dir: Path,
    api_url: str,
    deployments: list[tuple[str, str]],
    *,
    name: str = "serve",
) -> ManagedProcess:
    """Start serving and wait until every `(flow name, deployment name)` is registered.

    Raises:
        StackError: The deployments did not appear in time.
    """
    process = start_process(
        name,
        [sys.executable, "-m", "deployments.serve"],
        env=env,
        log_path=work_dir / "logs" / f"{name}.log",
    )
    try:
        wait_until(
            lambda: all(_deployment_exists(api_url, *pair) for pair in deployments),
            timeout=SERVE_START_TIMEOUT,
            what="the served deployments",
            process=process,
        )
    except BaseException:
        process.stop()
        raise
    return process


def _deployment_exists(api_url: str, flow_name: str, deployment_name: str) -> bool:
    try:
        response = httpx.get(f"{api_url}/deployments/name/{flow_name}/{deployment_name}", timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
