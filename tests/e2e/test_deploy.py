"""`prefect deploy --all` from any shell: the first `python` on PATH does not matter.

The README's command is run with the project's own `.venv/bin/prefect`, without
activating the environment, from a shell whose first `python` and `python3` are an
interpreter that lacks the project (and Prefect), against a Prefect server of its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest
from prefect.workers.process import ProcessWorker

from deployments.spec import load_specs
from tests.e2e.commands import run_command, without_project
from tooling.devstack.prefect_server import prefect_environment, start_prefect_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
POOL = "open-connectors"
# The system's interpreter: the same Python version, without the project's packages.
FOREIGN_PYTHON = Path("/usr/bin/python3")


def shell_without_the_project(directory: Path) -> str:
    """A PATH whose first `python` and `python3` are an interpreter lacking the project."""
    if not FOREIGN_PYTHON.exists():
        pytest.fail(f"{FOREIGN_PYTHON} is needed as the interpreter that lacks the project")
    directory.mkdir(parents=True)
    for name in ("python", "python3"):
        (directory / name).symlink_to(FOREIGN_PYTHON)
    return os.pathsep.join([str(directory), "/usr/bin", "/bin"])


def test_prefect_deploy_all_works_whichever_python_is_first_on_path(tmp_path: Path) -> None:
    # A server of its own: deploying to the session's server would take its deployments
    # away from the serving process.
    server = start_prefect_server(tmp_path / "home")
    try:
        env = without_project(prefect_environment(server.home, server.api_url))
        env.update(PATH=shell_without_the_project(tmp_path / "bin"), COLUMNS="200")
        deployments_dir = ROOT / "deployments"
        # The premise: in that shell, `python` cannot import the project.
        for python in ("python", "python3"):
            probe = run_command(
                ["/bin/sh", "-c", f"{python} -c 'import flows' || echo LACKS-THE-PROJECT"],
                env=env,
                cwd=deployments_dir,
                log=tmp_path / "logs" / f"{python}.log",
                timeout=30,
            )
            assert "LACKS-THE-PROJECT" in probe, probe
        api = httpx.Client(base_url=server.api_url, timeout=10)
        api.post(
            "/work_pools/",
            json={
                "name": POOL,
                "type": "process",
                "base_job_template": ProcessWorker.get_default_base_job_template(),
            },
        ).raise_for_status()

        # The project's own prefect, not activated: its shebang names the project's interpreter.
        prefect = Path(sys.executable).parent / "prefect"
        run_command(
            [str(prefect), "--no-prompt", "deploy", "--all"],
            env=env,
            cwd=deployments_dir,
            log=tmp_path / "logs" / "deploy.log",
            timeout=240,
        )

        registered = {
            item["name"]: item for item in api.post("/deployments/filter", json={}).json()
        }
        assert set(registered) == {spec.name for spec in load_specs()}
        for deployment in registered.values():
            assert deployment["work_pool_name"] == POOL
            # A worker moves into the project before running the flow.
            assert deployment["pull_steps"] == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
            ]
    finally:
        server.stop()
