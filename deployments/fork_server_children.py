"""The fork server's children, followed to their end even when the fork server dies.

multiprocessing learns a fork-server child's exit status from the fork server, through
a socket. A SIGKILL cannot be ignored (an out-of-memory kill may pick the fork server):
its children live on, but multiprocessing reads each of them as ended at once (code
255), and Prefect's runner would report every run it holds Crashed while they go on,
a run waiting hot included. So each child is also followed by a pidfd of its own: once
the fork server is gone, the child's end is the pidfd's. Its status is then known only
where the orphan is handed to this process (PID 1 of a container, or a subreaper),
which also reaps it; elsewhere it is lost (`UNKNOWN_EXIT`, as multiprocessing says),
and Prefect's own evidence of how the run ended (the engine's report to the runner)
decides whether it crashed. A new fork server is started at once, so that the next
run does not wait for its imports.

Pidfds are Linux's (5.3 and later); elsewhere (macOS) this is multiprocessing's own
way. `deployments.fork_server` imports it only where it starts a fork server (not on
Windows).
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.popen_forkserver
import multiprocessing.util
import os
import threading
import time
from typing import Any

# What multiprocessing reports for a process whose fork server died (its status is lost).
UNKNOWN_EXIT = 255
# A dying process's files close (the socket this process reads ends) before the kernel
# hands its children to their new parent: how long a status is waited for meanwhile.
ADOPTION_SECONDS = 1.0

_logger = logging.getLogger(__name__)
_restarted: set[int] = set()
_restarting = threading.Lock()


class FollowedPopen(multiprocessing.popen_forkserver.Popen):
    """multiprocessing's fork-server child, also followed by its pidfd: the fork server's
    death is no longer read as the child's end.

    Safe to use from several threads at once (Prefect's runner joins each run's process
    in a worker thread while its event loop polls them all): one reader of a status.
    """

    def _launch(self, process_obj: Any) -> None:
        self._lock = threading.Lock()
        self._fork_server_gone = False
        self._pidfd: int | None = None
        super()._launch(process_obj)
        self._server_pid: int | None = multiprocessing.forkserver._forkserver._forkserver_pid
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:  # not Linux: multiprocessing's way
            return
        try:
            self._pidfd = pidfd_open(self.pid)
        except OSError:  # a kernel without pidfds, or the child ended already
            return
        multiprocessing.util.Finalize(self, os.close, (self._pidfd,))

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        """The exit code once the child has ended (blocks until then unless WNOHANG)."""
        return self._ended_within(0.0 if flag == os.WNOHANG else None)

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the child has ended, or None after `timeout` seconds."""
        return self._ended_within(timeout)

    def _ended_within(self, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.returncode is None and not self._fork_server_gone:
            if not multiprocessing.connection.wait([self.sentinel], _left(deadline)):
                return None
            self._read_status()
        if (
            self.returncode is None
            and self._pidfd is not None
            and multiprocessing.connection.wait([self._pidfd], _left(deadline))
        ):
            with self._lock:
                if self.returncode is None:
                    self.returncode = self._adopted_exit_code(patient=timeout != 0.0)
        return self.returncode

    def _read_status(self) -> None:
        """Read the status the fork server sent, or notice that it is gone."""
        with self._lock:
            if self.returncode is not None or self._fork_server_gone:
                return
            try:
                self.returncode = multiprocessing.forkserver.read_signed(self.sentinel)
            except (OSError, EOFError):
                if self._pidfd is None:
                    self.returncode = UNKNOWN_EXIT  # multiprocessing's own answer
                    return
                self._fork_server_gone = True
                _logger.warning(
                    "The fork server ended unexpectedly; flow-run process %s goes on, and "
                    "its end is followed directly. A new fork server is starting.",
                    self.pid,
                )
                _restart_fork_server(self._server_pid)

    def _adopted_exit_code(self, *, patient: bool) -> int | None:
        """The ended child's status, reaped here when it was handed to this process; else
        `UNKNOWN_EXIT`. None (not patient) while its dead fork server still holds it."""
        assert self._pidfd is not None
        given_up_at = time.monotonic() + ADOPTION_SECONDS
        while True:
            try:
                ended = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:  # not this process's child, or not yet
                if _parent_of(self.pid) != self._server_pid:
                    return UNKNOWN_EXIT  # another's (init's): its status is theirs
                if not patient:
                    return None
                if time.monotonic() > given_up_at:
                    return UNKNOWN_EXIT
                time.sleep(0.01)
                continue
            except OSError:
                return UNKNOWN_EXIT
            if ended is None:  # not waitable yet, though its pidfd said it ended
                return None if not patient else UNKNOWN_EXIT
            return ended.si_status if ended.si_code == os.CLD_EXITED else -ended.si_status


class FollowedProcess(multiprocessing.context.ForkServerProcess):
    """A fork server's process whose end is its own (`FollowedPopen`)."""

    @staticmethod
    def _Popen(process_obj: Any) -> FollowedPopen:
        return FollowedPopen(process_obj)


class FollowedContext(multiprocessing.context.ForkServerContext):
    """multiprocessing's fork-server context, with `FollowedProcess`."""

    Process = FollowedProcess


CONTEXT = FollowedContext()


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _parent_of(pid: int) -> int | None:
    """The process's parent pid, None once it is gone."""
    found = _stat(pid)
    return None if found is None else found[1]


def _stat(pid: int) -> tuple[bytes, int] | None:
    """The process's state letter and parent pid (from /proc), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0], int(fields[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def _restart_fork_server(dead: int | None) -> None:
    """Start a new fork server once the dead one `dead` has exited (in the background, once).

    multiprocessing would start it on the next run's start, inside the runner's event
    loop, which would then wait for the new server's imports.
    """
    with _restarting:
        if dead is None or dead in _restarted:
            return
        _restarted.add(dead)

    def restart() -> None:
        given_up_at = time.monotonic() + ADOPTION_SECONDS * 10
        while (found := _stat(dead)) is not None and found[0] not in (b"Z", b"X"):
            if time.monotonic() > given_up_at:
                return  # the next run's start tries again
            time.sleep(0.01)
        try:
            multiprocessing.forkserver.ensure_running()
        except Exception:  # the next run's start tries again, and says why
            _logger.debug("Starting a new fork server failed.", exc_info=True)

    threading.Thread(target=restart, name="fork-server-restart", daemon=True).start()
