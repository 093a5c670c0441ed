"""A benchmark stack's directory (its logs) is removed after a clean part, kept after failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tooling.benchmarks import harness


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stack's directory; the stack itself is a stand-in (no process is started)."""
    directory = tmp_path / "oc-bench-test"

    def make_home(prefix: str) -> str:
        directory.mkdir()
        (directory / "logs").mkdir()
        return str(directory)

    @contextlib.contextmanager
    def no_stack(home: Path, **_: Any) -> Iterator[SimpleNamespace]:
        yield SimpleNamespace(home=home)

    monkeypatch.setattr(harness.tempfile, "mkdtemp", make_home)
    monkeypatch.setattr(harness, "local_stack", no_stack)
    return directory


def test_a_clean_part_removes_the_stack_directory(home: Path) -> None:
    with harness.bench_stack("test", ours=False, minimal=False):
        assert home.is_dir()
    assert not home.exists()


def test_a_part_that_saw_failures_keeps_the_logs(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with harness.bench_stack("test", ours=False, minimal=False) as bench:
        bench.keep_logs = True  # as a waiting round does when a run failed
    assert (home / "logs").is_dir()
    assert str(home) in capsys.readouterr().err


def test_a_part_that_raised_keeps_the_logs(home: Path) -> None:
    with pytest.raises(RuntimeError), harness.bench_stack("test", ours=False, minimal=False):
        raise RuntimeError("the part broke")
    assert (home / "logs").is_dir()
