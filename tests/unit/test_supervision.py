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
from deployments.spec import load_specs
from flows.steps.supervision import (
    Supervision,
    silence_unread_output,
    unread_output,
    watch_output,
    watch_supervision,
)

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


class _LostAfter:
    """A supervision lost after `checks` looks."""

    def __init__(self, checks: int) -> None:
        self.checks = checks
        self.looks = 0

    def lost(self) -> bool:
        self.looks += 1
        return self.looks > self.checks


def test_a_run_whose_supervisor_is_gone_goes_on_without_dying_on_its_console_log() -> None:
    # The watch every run starts (`watch_supervision`): once its serving process or worker
    # is gone, the next console log must not end the process (Rich's SystemExit) in the
    # middle of a step, e.g. between the instance's creation and its token's save.
    orphaned_read, orphaned_write = os.pipe()
    orphaned = os.fdopen(orphaned_write, "w")
    told: list[list[int]] = []
    supervision = _LostAfter(checks=2)
    try:
        watch_output(supervision, told.append, every=0.01, streams=(orphaned,))  # type: ignore[arg-type]
        assert supervision.looks == 3 and told == [[]]  # still read: nothing to silence
        os.close(orphaned_read)  # the worker that read it is gone
        watch_output(_LostAfter(checks=0), told.append, every=0.01, streams=(orphaned,))  # type: ignore[arg-type]
        assert told[-1] == [orphaned_write]
        Console(file=orphaned).print("a console log")  # no SystemExit
        orphaned.flush()
    finally:
        orphaned.close()


@pytest.mark.parametrize("spec", load_specs(), ids=lambda spec: spec.name)
def test_every_deployed_flow_watches_its_supervision(spec: object) -> None:
    assert watch_supervision in spec.load_flow().on_running_hooks  # type: ignore[attr-defined]


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
        # The runner's end leaves the fork server's temporary directory: in this test's.
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert seen.read_text() == "lost"


ORPHANED_RUN = """
import os, pathlib, sys, time
from prefect import flow, get_client, get_run_logger
from prefect.flow_engine import run_flow
from flows.steps import supervision

supervision.SUPERVISION_CHECK_SECONDS = 600  # only a console log can notice it here

@flow(on_running=[supervision.watch_supervision])
def orphaned_run(go: str, done: str) -> None:
    print("started", flush=True)
    while not os.path.exists(go):
        time.sleep(0.05)
    for n in range(3):  # into the pipe nobody reads any more
        get_run_logger().info("a console log %d", n)
    pathlib.Path(done).write_text("done")

if __name__ == "__main__":
    parameters = {"go": sys.argv[1], "done": sys.argv[2]}
    with get_client(sync_client=True) as client:  # a deployment's run, as a worker runs it
        deployment = client.create_deployment(client.create_flow(orphaned_run), "orphaned")
        run = client.create_flow_run_from_deployment(deployment, parameters=parameters)
    state = run_flow(orphaned_run, flow_run=run, parameters=parameters, return_type="state")
    sys.exit(0 if state.is_completed() else 3)
"""


def test_a_console_log_into_a_dead_pipe_does_not_end_the_run(
    prefect_harness: None, tmp_path: Path
) -> None:
    # A process worker reads its runs' output through pipes. Killed alone, the next
    # console log of its run would end the run's process (Rich's SystemExit), before the
    # watch's next check: the run goes on instead, and completes.
    from prefect.settings import PREFECT_API_URL

    script = tmp_path / "orphaned_run.py"
    script.write_text(ORPHANED_RUN)
    go, done = tmp_path / "go", tmp_path / "done"
    environment = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    environment["PYTHONPATH"] = str(PROJECT_ROOT)
    run = subprocess.Popen(
        [sys.executable, str(script), str(go), str(done)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        cwd=PROJECT_ROOT,
    )
    try:
        assert run.stdout is not None and run.stderr is not None
        for line in run.stdout:  # its console logs until the flow's body starts
            if line.startswith(b"started"):
                break
        run.stdout.close()  # the worker is gone: nobody reads its output any more
        run.stderr.close()
        go.touch()
        assert run.wait(timeout=120) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert done.read_text() == "done"
