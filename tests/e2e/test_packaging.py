"""The product installs alone: its wheel in a fresh environment, as a user's worker gets it.

The wheel is built from this checkout, installed into a new virtual environment
(dependency versions pinned to uv.lock, so uv's cache serves them), and looked at from
there: which packages it holds, that the tooling is absent, and that a Prefect server
started in that environment lists the project's blocks without a register step.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.commands import run_command, uv_command, without_project
from tooling.devstack.prefect_server import prefect_environment
from tooling.devstack.processes import free_port, start_process, wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = {"open_connectors", "blocks", "flows", "deployments", "callback_receiver"}
BLOCK_TYPES = {
    "open-connectors-credentials",
    "open-connectors-oauth-app",
    "open-connectors-instance",
}
INSTALL_TIMEOUT = 240
SERVER_TIMEOUT = 120

# Run inside the fresh environment: where each product package comes from, and what
# importing the tooling raises there.
PROBE = """
import importlib, json
found, missing = {}, {}
for name in PRODUCTS:
    found[name] = importlib.import_module(name).__file__
for name in ("tooling", "tooling.sandbox", "sandbox", "devstack", "demo", "benchmarks"):
    try:
        importlib.import_module(name)
    except ImportError as exc:
        missing[name] = type(exc).__name__
print(json.dumps({"found": found, "missing": missing}))
"""


@dataclass
class Installed:
    """The wheel and the fresh environment it was installed into.

    Attributes:
        wheel: The built wheel.
        venv: The virtual environment's directory.
        work: A directory outside the project, the cwd of every process run there.
    """

    wheel: Path
    venv: Path
    work: Path

    @property
    def bin(self) -> Path:
        """The environment's scripts directory."""
        return self.venv / "bin"

    def env(self) -> dict[str, str]:
        """An environment for its processes: nothing pointing at the project's own `.venv`."""
        return without_project(prefect_environment(self.work / "prefect", "http://127.0.0.1:9"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Build the wheel (`uv build --wheel`) and install it into a new virtual environment."""
    base = tmp_path_factory.mktemp("packaging")
    work = base / "work"
    work.mkdir()
    logs = base / "logs"
    uv = uv_command()
    # uv's own settings (cache, index) stay; nothing of the project's environment or Prefect's.
    env = {
        k: v for k, v in without_project(dict(os.environ)).items() if not k.startswith("PREFECT_")
    }
    run_command(
        [*uv, "build", "--wheel", "--out-dir", str(base / "dist"), str(ROOT)],
        env=env,
        cwd=work,
        log=logs / "build.log",
        timeout=INSTALL_TIMEOUT,
    )
    (wheel,) = (base / "dist").glob("*.whl")
    # The product's runtime dependencies at the locked versions (no dev group, not the project).
    constraints = base / "constraints.txt"
    run_command(
        [
            *uv,
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-hashes",
            "--project",
            str(ROOT),
            "--output-file",
            str(constraints),
        ],
        env=env,
        cwd=work,
        log=logs / "export.log",
        timeout=INSTALL_TIMEOUT,
    )
    venv = base / "venv"
    run_command(
        [*uv, "venv", "--python", sys.executable, str(venv)],
        env=env,
        cwd=work,
        log=logs / "venv.log",
        timeout=INSTALL_TIMEOUT,
    )
    run_command(
        [
            *uv,
            "pip",
            "install",
            "--python",
            str(venv / "bin" / "python"),
            "--constraint",
            str(constraints),
            str(wheel),
        ],
        env=env,
        cwd=work,
        log=logs / "install.log",
        timeout=INSTALL_TIMEOUT,
    )
    yield Installed(wheel=wheel, venv=venv, work=work)


def top_level(wheel: Path) -> set[str]:
    """The top-level names a wheel puts into site-packages, its metadata apart."""
    with zipfile.ZipFile(wheel) as archive:
        names = {name.split("/", 1)[0] for name in archive.namelist()}
    return {name for name in names if not name.endswith(".dist-info")}


def entry_points(wheel: Path) -> str:
    """The wheel's `entry_points.txt`."""
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [
            name for name in archive.namelist() if name.endswith(".dist-info/entry_points.txt")
        ]
        return archive.read(path).decode()


def test_the_wheel_holds_exactly_the_product(installed: Installed) -> None:
    assert top_level(installed.wheel) == PRODUCT
    with zipfile.ZipFile(installed.wheel) as archive:
        # `deployments.spec` reads the deployments from the file beside it.
        assert "deployments/prefect.yaml" in archive.namelist()
    points = entry_points(installed.wheel)
    assert "[prefect.collections]\nopen_connectors_auth = blocks" in points
    assert "console_scripts" not in points, points


def test_the_environment_has_the_product_and_no_tooling(installed: Installed) -> None:
    probe = PROBE.replace("PRODUCTS", repr(sorted(PRODUCT)))
    output = run_command(
        [str(installed.bin / "python"), "-c", probe],
        env=installed.env(),
        cwd=installed.work,
        log=installed.work / "probe.log",
        timeout=120,
    )
    result = json.loads(output.strip().splitlines()[-1])
    site_packages = installed.venv.resolve()
    for name, file in result["found"].items():
        assert Path(file).resolve().is_relative_to(site_packages), (name, file)
    assert result["missing"] == {
        "tooling": "ModuleNotFoundError",
        "tooling.sandbox": "ModuleNotFoundError",
        "sandbox": "ModuleNotFoundError",
        "devstack": "ModuleNotFoundError",
        "demo": "ModuleNotFoundError",
        "benchmarks": "ModuleNotFoundError",
    }
    commands = {path.name for path in installed.bin.iterdir()}
    assert "prefect" in commands
    assert not {"oc-sandbox", "sandbox", "demo", "benchmarks"} & commands, sorted(commands)


def test_a_server_started_there_lists_the_blocks_without_registering_them(
    installed: Installed,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = installed.work / "server-home"
    env = without_project(prefect_environment(home, f"{url}/api"))
    env["PREFECT_SERVER_UI_ENABLED"] = (
        "false"  # the API is what is looked at; the UI only slows the start
    )
    server = start_process(
        "prefect server (wheel)",
        [
            str(installed.bin / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        log_path=home / "prefect-server.log",
        cwd=installed.work,
    )
    try:
        wait_until(
            lambda: _answers(f"{url}/api/health"),
            timeout=SERVER_TIMEOUT,
            what=f"the wheel's Prefect server at {url}",
            process=server,
        )
        response = httpx.post(f"{url}/api/block_types/filter", json={}, timeout=10)
        response.raise_for_status()
        slugs = {item["slug"] for item in response.json()}
        assert slugs >= BLOCK_TYPES, sorted(slugs)
    finally:
        server.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
