"""Work pools, `prefect deploy` and `prefect worker` processes for the local stack.

The same commands the README gives a user, run with the project's own interpreter
first on PATH (the yaml's build step runs `python`) and bounded in time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from tooling.devstack.processes import ManagedProcess, run_to_end, start_process, wait_until

WORK_POOL = "open-connectors"
WORKER_START_TIMEOUT = 90.0
# How often a worker looks for new and resumed runs (Prefect's default is 10 s).
WORKER_QUERY_SECONDS = "1"


def cli_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` with this interpreter's directory first on PATH, so `python` and `prefect` are ours."""
    path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    return {**env, "PATH": path, "COLUMNS": "200"}


def run_prefect_cli(
    argv: list[str], *, env: dict[str, str], cwd: Path, log: Path, timeout: float
) -> str:
    """Run a Prefect CLI command to completion (stopped by its pid if it overruns); its output.

    Raises:
        StackError: The command failed or overran (its output's end in the message).
    """
    return run_to_end(
        [sys.executable, "-m", "prefect", *argv],
        env=cli_environment(env),
        cwd=cwd,
        log=log,
        timeout=timeout,
        name=argv[0],
    )


def create_process_pool(env: dict[str, str], work_dir: Path, name: str = WORK_POOL) -> None:
    """`prefect work-pool create <name> --type process` on the server `env` points at."""
    run_prefect_cli(
        ["work-pool", "create", name, "--type", "process"],
        env=env,
        cwd=work_dir,
        log=work_dir / "logs" / f"work-pool-{name}.log",
        timeout=120,
    )


def deploy_all(env: dict[str, str], work_dir: Path, deployments_dir: Path) -> str:
    """`prefect --no-prompt deploy --all` from `deployments_dir` (the project's `prefect.yaml`)."""
    return run_prefect_cli(
        ["--no-prompt", "deploy", "--all"],
        env=env,
        cwd=deployments_dir,
        log=work_dir / "logs" / "deploy.log",
        timeout=240,
    )


def start_worker(
    env: dict[str, str],
    work_dir: Path,
    api_url: str,
    *,
    pool: str = WORK_POOL,
    name: str = "worker",
    timeout: float = WORKER_START_TIMEOUT,
) -> ManagedProcess:
    """Start `prefect worker start --pool <pool> --name <name>` and wait until it has registered.

    The name must be new on that server: an earlier worker's record would count as ready.

    Raises:
        StackError: The worker did not register in time.
    """
    worker_env = {**cli_environment(env), "PREFECT_WORKER_QUERY_SECONDS": WORKER_QUERY_SECONDS}
    process = start_process(
        name,
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--name", name],
        env=worker_env,
        log_path=work_dir / "logs" / f"{name}.log",
        cwd=work_dir,
    )
    try:
        wait_until(
            lambda: name in worker_names(api_url, pool),
            timeout=timeout,
            what=f"the worker {name} on the pool {pool}",
            process=process,
        )
    except BaseException:
        process.stop()
        raise
    return process


def worker_names(api_url: str, pool: str) -> set[str]:
    """The names of the workers that have registered with the pool (alive or not)."""
    try:
        response = httpx.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=5)
    except httpx.HTTPError:
        return set()
    if response.status_code != 200:
        return set()
    return {item["name"] for item in response.json()}
