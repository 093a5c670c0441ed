"""Whether a flow-run process is still supervised, and its output once it is not."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import flows
from flows.steps.supervision import Supervision, silence_unread_output, unread_output

PROJECT_ROOT = Path(flows.__file__).resolve().parent.parent


def test_only_a_stream_into_a_pipe_nobody_reads_is_pointed_at_the_null_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Rich also points `sys.stdout` at the null device as it ends: not the test's own.
    monkeypatch.setattr(sys, "stdout", (tmp_path / "stdout").open("w"))
    orphaned_read, orphaned_write = os.pipe()
    read, write = os.pipe()
    os.close(orphaned_read)  # the worker that read it is gone
    orphaned, alive = os.fdopen(orphaned_write, "w"), os.fdopen(write, "w")
    try:
        # What Prefect's console logs would meet: Rich ends the process on it.
        with pytest.raises(SystemExit):
            Console(file=orphaned).print("a console log")
        assert unread_output((orphaned, alive, sys.stdout)) == [orphaned_write]
        assert silence_unread_output((orphaned, alive)) == [orphaned_write]
        Console(file=orphaned).print("a console log")
        orphaned.flush()
        alive.write("kept")
        alive.flush()
        assert os.read(read, 16) == b"kept"
        assert unread_output((orphaned, alive)) == []
    finally:
        for stream in (orphaned, alive, sys.stdout):
            stream.close()
        os.close(read)


def test_streams_without_a_descriptor_are_left_alone() -> None:
    assert silence_unread_output((io.StringIO(),)) == []


def test_a_process_whose_parent_pid_changes_is_unsupervised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A process worker's run: its parent is the worker; orphaned, it is init's or a
    # subreaper's child.
    parent = os.getppid()
    monkeypatch.setattr(os, "getppid", lambda: parent)
    supervision = Supervision()
    assert not supervision.lost()
    parent = 1
    assert supervision.lost()


def test_a_process_whose_output_nobody_reads_is_unsupervised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its parent may live on (a wrapper such as `uv run`) while the pipe's reader is gone.
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as orphaned:
        monkeypatch.setattr(sys, "stderr", orphaned)
        assert Supervision().lost()


CHILD_OF_A_RUNNER = """
import multiprocessing, os, sys, time
from flows.steps.supervision import Supervision

def run(path):
    supervision = Supervision()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if supervision.lost():
            open(path, "w").write("lost")
            return
        time.sleep(0.05)
    open(path, "w").write("still supervised")

if __name__ == "__main__":
    child = multiprocessing.get_context("forkserver").Process(target=run, args=(sys.argv[1],))
    child.start()
    time.sleep(1)
    assert child.is_alive() and not os.path.exists(sys.argv[1])
    os._exit(0)  # the runner is killed: the fork server, the child's parent, lives on
"""


def test_a_run_forked_by_the_fork_server_sees_its_runner_gone(tmp_path: Path) -> None:
    # `prefect.serve` with the fork server: the run's parent pid is the fork server's,
    # which outlives the runner as long as one of its children lives.
    script, seen = tmp_path / "runner.py", tmp_path / "seen"
    script.write_text(CHILD_OF_A_RUNNER)
    ran = subprocess.run(
        [sys.executable, str(script), str(seen)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert seen.read_text() == "lost"
