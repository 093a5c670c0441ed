"""What the benchmarks ran on: cores, memory, load, versions."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path


def _meminfo_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. `0.12 0.30 0.41`."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


def describe(database: str = "SQLite") -> str:
    """One Markdown paragraph describing the machine and the software versions."""
    total = _meminfo_total()
    memory = f"{total / 1024**3:.1f} GiB" if total else "? GiB"
    python = ".".join(str(part) for part in sys.version_info[:3])
    return (
        f"Machine: {os.cpu_count()} cores ({_cpu_model()}), {memory} memory, "
        f"{platform.system()} {platform.release()}; Python {python}, Prefect "
        f"{_version('prefect')}, httpx {_version('httpx')}, {database} database; load average "
        f"at the start {load_average()}."
    )
