"""Start, watch and stop the local processes of the stack (loopback only, bounded in time).

Every process is started in its own session, so that stopping it also stops the
children it started (the serve process runs each flow run in a subprocess), and
only processes this module started are ever signalled, by their process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class StackError(RuntimeError):
    """A process of the stack did not start or stopped unexpectedly."""


def free_port() -> int:
    """A TCP port free on loopback at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ManagedProcess:
    """A process started by the stack, with its log file.

    Attributes:
        name: A short name for messages.
        popen: The process.
        log_path: Where its stderr (and stdout, unless piped) goes.
    """

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def is_running(self) -> bool:
        """Whether the process has not exited."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the process and its children: SIGTERM to its group, SIGKILL after `timeout`."""
        if self.is_running():
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Children that outlived their parent (flow run subprocesses) are in the group too.
        self._signal_group(signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """Kill the process and its children at once (SIGKILL), as a crash or OOM would."""
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self.stop()

    def _signal_group(self, sig: signal.Signals) -> None:
        # The group id is the pid of the process this module started (start_new_session).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


def start_process(
    name: str,
    argv: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    cwd: Path | None = None,
    pipe_stdout: bool = False,
) -> ManagedProcess:
    """Start a process in its own session, logging to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("ab")
    popen = subprocess.Popen(  # noqa: S603 - argv built by the stack, never from user input
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if pipe_stdout else log_file,
        stderr=log_file,
        start_new_session=True,
    )
    return ManagedProcess(name=name, popen=popen, log_path=log_path, _log_file=log_file)


def run_to_end(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    timeout: float,
    name: str | None = None,
) -> str:
    """Run `argv` in its own session until it exits; its output (stdout and stderr, from `log`).

    Raises:
        StackError: It exited with a non-zero code, or overran `timeout` (then it and its
            children are stopped by its pid); the message ends with its output.
    """
    process = start_process(name or Path(argv[0]).name, argv, env=env, log_path=log, cwd=cwd)
    overran = False
    try:
        process.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        overran = True
    finally:
        process.stop()
    output = log.read_text(errors="replace")
    if overran or process.popen.returncode != 0:
        how = f"overran {timeout:.0f} s" if overran else f"failed (code {process.popen.returncode})"
        raise StackError(f"`{' '.join(argv)}` {how}:\n{output[-3000:]}")
    return output


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    process: ManagedProcess | None = None,
) -> None:
    """Poll `predicate` until it holds; fail with the process log when it never does.

    Raises:
        StackError: The timeout passed, or `process` exited while waiting.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and not process.is_running():
            raise StackError(
                f"{process.name} exited (code {process.popen.returncode}) while waiting for "
                f"{what}. Its log ({process.log_path}):\n{process.log_tail()}"
            )
        time.sleep(interval)
    tail = f" Log of {process.name}:\n{process.log_tail()}" if process else ""
    raise StackError(f"Timed out after {timeout:.0f} s waiting for {what}.{tail}")


def read_ready_line(process: ManagedProcess, *, timeout: float) -> dict[str, str]:
    """Read the `{"event": "ready", ...}` JSON line a service prints on stdout when it listens.

    Raises:
        StackError: No ready line within `timeout`, or the process exited.
    """
    stdout = process.popen.stdout
    assert stdout is not None, "start the process with pipe_stdout=True"
    deadline = time.monotonic() + timeout
    buffer = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([stdout], [], [], 0.2)
        if readable:
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
            for line in buffer.splitlines():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict) and message.get("event") == "ready":
                    return message
        elif not process.is_running():
            break
    raise StackError(f"{process.name} did not report ready. Its log:\n{process.log_tail()}")
