"""Run a command line to its end from a test: bounded in time, stopped by its pid, logged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tooling.devstack.processes import run_to_end

# What would let a child process find the project without installing it.
PROJECT_LEAKS = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")


def run_command(
    argv: list[str], *, env: dict[str, str], cwd: Path, log: Path, timeout: float
) -> str:
    """Run `argv` to its end (bounded, stopped by its pid); its output.

    Raises:
        StackError: It failed or overran; the message ends with its output.
    """
    return run_to_end(argv, env=env, cwd=cwd, log=log, timeout=timeout)


def without_project(env: dict[str, str]) -> dict[str, str]:
    """`env` without the variables that point a Python process at the project's environment."""
    return {key: value for key, value in env.items() if key not in PROJECT_LEAKS}


def uv_command() -> list[str]:
    """How to run uv here: the one running the tests (`UV`), the one on PATH, or `python3 -m uv`."""
    found = os.environ.get("UV") or shutil.which("uv")
    if found:
        return [found]
    python3 = shutil.which("python3")
    assert python3, "neither uv nor python3 on PATH: scripts/_uv.sh installs uv"
    return [python3, "-m", "uv"]
