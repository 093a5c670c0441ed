"""Served runs fork from a warm interpreter, and their flows survive the trip there."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import cloudpickle
import pytest
from prefect.flow_engine import run_flow_in_subprocess

from deployments.fork_server import enabled
from deployments.spec import load_specs


def test_prefect_still_asks_for_the_spawn_context_by_name() -> None:
    # What `use_fork_server` relies on; after a Prefect upgrade that changes it, runs
    # would start cold again (correct, but slow): this says so first.
    assert 'multiprocessing.get_context("spawn")' in inspect.getsource(run_flow_in_subprocess)


def test_the_fork_server_serves_what_prefect_spawns() -> None:
    script = (
        "import multiprocessing, prefect.flow_engine as engine\n"
        "from deployments.fork_server import use_fork_server\n"
        "assert use_fork_server(preload=('prefect',))\n"
        "context = engine.multiprocessing.get_context('spawn')\n"
        "assert context.get_start_method() == 'forkserver', context\n"
        "assert engine.multiprocessing.get_context('fork').get_start_method() == 'fork'\n"
        "assert engine.multiprocessing.cpu_count() == multiprocessing.cpu_count()\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", True), ("1", True), ("0", False), ("off", False), (" False ", False), ("no", False)],
)
def test_the_switch(value: str, expected: bool) -> None:
    assert enabled({"OC_FORK_SERVER": value}) is expected


@pytest.mark.parametrize("spec", load_specs(), ids=lambda spec: spec.name)
def test_a_served_flow_keeps_its_parameter_types_when_pickled_by_value(spec: object) -> None:
    # The runner hands its flow object to the run's process with cloudpickle. A flow's
    # function is not importable under its own name (the name holds the Flow), so it
    # travels by value, with only the globals its code uses: string annotations
    # (`from __future__ import annotations`) would no longer resolve there.
    flow = spec.load_flow()  # type: ignore[attr-defined]
    travelled = cloudpickle.loads(cloudpickle.dumps(flow))
    assert travelled.fn is not flow.fn
    hints = typing.get_type_hints(travelled.fn, include_extras=True)  # no NameError
    assert _shown(hints) == _shown(typing.get_type_hints(flow.fn, include_extras=True))


def _shown(hints: dict[str, object]) -> dict[str, str]:
    # Validators defined in functions travel by value too: compare them without addresses.
    return {name: re.sub(r" at 0x[0-9a-f]+", "", repr(hint)) for name, hint in hints.items()}


def test_the_authorization_flow_validates_its_parameters_after_the_trip() -> None:
    (spec,) = [s for s in load_specs() if s.name == "authenticate-infusionsoft-erp"]
    travelled = cloudpickle.loads(cloudpickle.dumps(spec.load_flow()))
    parameters = travelled.validate_parameters({**spec.parameters, "instance_name": "Acme ERP"})
    assert parameters["instance_name"] == "Acme ERP"


def test_the_fork_server_outlives_a_group_sigterm_and_its_runs_do_not_ignore_one() -> None:
    # A stop of the serving process's group reaches the fork server: were it killed, the
    # exit status of every run it forked would be lost (Prefect: "Crashed", code 255).
    script = (
        "import multiprocessing, multiprocessing.forkserver as fs, os, signal, time\n"
        "from deployments.fork_server import use_fork_server\n"
        "assert use_fork_server(preload=('deployments.fork_server_signals',))\n"
        "context = multiprocessing.get_context('forkserver')\n"
        "first = context.Process(target=os.getpid)\n"
        "first.start()\n"
        "first.join(60)\n"
        "assert first.exitcode == 0, first.exitcode  # the preloads are done\n"
        "server = fs._forkserver._forkserver_pid\n"
        "os.kill(server, signal.SIGTERM)\n"
        "time.sleep(0.5)\n"
        "assert os.waitpid(server, os.WNOHANG) == (0, 0), 'the fork server died'\n"
        "run = context.Process(target=signal.raise_signal, args=(signal.SIGTERM,))\n"
        "run.start()\n"
        "run.join(30)\n"
        "assert run.exitcode == -signal.SIGTERM, run.exitcode\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfds are Linux's")
@pytest.mark.parametrize("adopted", [False, True], ids=["orphan-to-init", "orphan-to-us"])
def test_a_run_outlives_a_killed_fork_server_and_is_not_read_as_ended(
    adopted: bool, tmp_path: Path
) -> None:
    # An out-of-memory kill may pick the fork server (a SIGKILL cannot be ignored). Its
    # forked runs live on; multiprocessing alone would read each as ended at once (255),
    # and Prefect's runner would report the run Crashed while it goes on. Followed by its
    # pidfd, the run's process reads as running until it ends, and the next run starts a
    # new fork server. Where the orphan is handed to the serving process (PID 1 of a
    # container, here a subreaper), its real status is read and it is reaped.
    ended_with = "-signal.SIGTERM" if adopted else "UNKNOWN_EXIT"
    script = (
        "import ctypes, multiprocessing.forkserver as fs, os, signal, time\n"
        "import prefect.flow_engine as engine\n"
        "from deployments.fork_server import use_fork_server\n"
        "from deployments.fork_server_children import UNKNOWN_EXIT\n"
        f"if {adopted}:\n"
        "    assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # subreaper\n"
        "assert use_fork_server(preload=('deployments.fork_server_signals',"
        " 'deployments.fork_server_children'))\n"
        "context = engine.multiprocessing.get_context('spawn')\n"
        "run = context.Process(target=time.sleep, args=(120,))\n"
        "run.start()\n"
        "server = fs._forkserver._forkserver_pid\n"
        "def running(pid):\n"
        "    try:\n"
        "        with open(f'/proc/{pid}/stat') as stat:\n"
        "            return stat.read().rsplit(')', 1)[1].split()[0] not in 'ZX'\n"
        "    except FileNotFoundError:\n"
        "        return False\n"
        "os.kill(server, signal.SIGKILL)\n"
        "while running(server):  # dead, left for multiprocessing to reap\n"
        "    time.sleep(0.01)\n"
        "assert run.is_alive() and running(run.pid), run.exitcode\n"
        "started = time.monotonic()\n"
        "run.join(0.3)\n"
        "assert run.exitcode is None, run.exitcode  # join's timeout still holds\n"
        "assert time.monotonic() - started < 1\n"
        "deadline = time.monotonic() + 30  # a new fork server starts before any run asks\n"
        "while fs._forkserver._forkserver_pid in (server, None):\n"
        "    assert time.monotonic() < deadline, 'no new fork server'\n"
        "    time.sleep(0.05)\n"
        "assert run.is_alive()\n"
        "os.kill(run.pid, signal.SIGTERM)  # the run ends, as it would by itself\n"
        "run.join(60)\n"
        f"assert run.exitcode == {ended_with}, run.exitcode\n"
        "assert not running(run.pid)  # ended: not read as ended before\n"
        f"assert not {adopted} or not os.path.exists(f'/proc/{{run.pid}}')  # ours: reaped\n"
        "after = context.Process(target=os._exit, args=(7,))\n"
        "after.start()\n"
        "after.join(60)\n"
        "assert after.exitcode == 7, after.exitcode  # a new fork server, statuses again\n"
        "assert fs._forkserver._forkserver_pid != server\n"
        "print('ok')\n"
    )
    # The killed fork server leaves its temporary directory: in this test's, not /tmp.
    environment = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=environment,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    assert "The fork server ended unexpectedly" in done.stderr


def test_imported_anywhere_else_it_changes_no_signal() -> None:
    import signal

    from deployments import fork_server_signals

    assert not fork_server_signals.imported_by_fork_server()
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
