"""Whether a flow-run process is still supervised, and its output once it is not.

A worker or serving process starts each run's process, reads its output through a pipe,
stops it and reports it. Killed alone (an out-of-memory kill, `kill -9` of its pid), it
leaves that process orphaned: nobody stops or reports it any more, and its output pipe
has no reader, so a write into it fails. Rich, which prints Prefect's console logs, ends
the process on the first such failure (`SystemExit`, from inside whatever it was doing).
"""

from __future__ import annotations

import multiprocessing
import os
import select
import stat
import sys
from typing import TextIO


class Supervision:
    """What started this process, as seen when it is created; `lost()` tells when it is gone.

    A process Prefect's runner started through `multiprocessing` (`prefect.serve`, with or
    without the fork server) follows the runner itself: its parent pid is the fork
    server's, which lives on as long as any of its children do. Any other process (a
    process worker's `python -m prefect.engine`) follows its parent pid: it changes when the
    parent dies (to init's, or a subreaper's). A container's first process (parent pid 0)
    has nothing to follow but its output.
    """

    def __init__(self) -> None:
        self._runner = multiprocessing.parent_process()
        self._parent_pid = os.getppid()

    def lost(self) -> bool:
        """Whether the process that started this one is gone, or nobody reads its output."""
        if self._runner is not None:
            gone = not self._runner.is_alive()
        else:
            gone = os.getppid() != self._parent_pid
        return gone or bool(unread_output())


def unread_output(streams: tuple[TextIO, ...] | None = None) -> list[int]:
    """The file descriptors of `streams` (stdout and stderr) that write where nobody reads.

    A pipe whose read end is closed (`POLLERR`), a socket whose peer is gone (`POLLERR` or
    `POLLHUP`). Files, terminals and live pipes are never listed. Only where the system
    can tell (`poll`: Linux, macOS).
    """
    if not hasattr(select, "poll"):
        return []
    unread: list[int] = []
    for stream in streams if streams is not None else (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
        except (AttributeError, OSError, ValueError):
            continue  # closed, or replaced by something without a descriptor
        gone = select.POLLERR | (select.POLLHUP if is_socket else 0)
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if any(events & gone for _, events in poller.poll(0)):
            unread.append(fd)
    return unread


def silence_unread_output(streams: tuple[TextIO, ...] | None = None) -> list[int]:
    """Point the streams that write where nobody reads (`unread_output`) at the null device.

    Returns:
        The file descriptors pointed at the null device.
    """
    silenced = unread_output(streams)
    for fd in silenced:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    return silenced
