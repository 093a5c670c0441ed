"""The process that serves deployments (`python -m deployments.serve` by default)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tooling.devstack.processes import ManagedProcess, start_process, wait_until

SERVE_START_TIMEOUT = 90.0


def start_serving(
    env: dict[str, str],
    work_dir: Path,
    api_url: str,
    deployments: list[tuple[str, str]],
    *,
    name: str = "serve",
    module: str = "deployments.serve",
    cwd: Path | None = None,
    log_path: Path | None = None,
    ready_line: str | None = None,
    timeout: float = SERVE_START_TIMEOUT,
) -> ManagedProcess:
    """Start `python -m <module>` and wait until every `(flow name, deployment name)` is registered.

    Args:
        module: The serving module.
        cwd: Where to start it (its modules are imported from there first).
        log_path: Its log (default `<work_dir>/logs/<name>.log`, appended to).
        ready_line: A line the log must also show before the process counts as ready
            (give a fresh `log_path`, or an earlier process's line would count).
        timeout: Seconds to wait for it.

    Raises:
        StackError: The deployments did not appear in time.
    """
    log_path = log_path or work_dir / "logs" / f"{name}.log"
    process = start_process(
        name, [sys.executable, "-m", module], env=env, log_path=log_path, cwd=cwd
    )

    def ready() -> bool:
        if ready_line is not None and ready_line not in log_path.read_text(errors="replace"):
            return False
        return all(_deployment_exists(api_url, *pair) for pair in deployments)

    try:
        wait_until(
            ready, timeout=timeout, what=f"the deployments served by {name}", process=process
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
