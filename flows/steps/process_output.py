"""The output of a flow-run process whose reader is gone."""

from __future__ import annotations

import os
import select
import sys
from typing import TextIO


def silence_unread_output(streams: tuple[TextIO, ...] | None = None) -> list[int]:
    """Point the streams that write into a pipe nobody reads at the null device.

    A worker or serving process reads its runs' output through a pipe. Once it is gone,
    a write into that pipe fails, and Rich, which prints Prefect's console logs, ends
    the process on the first such failure (`SystemExit`, from inside whatever the process
    was doing). A stream whose reader is alive, a file or a terminal is left as it is.
    Only where the system can tell (`poll`: Linux, macOS).

    Returns:
        The file descriptors pointed at the null device.
    """
    if not hasattr(select, "poll"):
        return []
    silenced: list[int] = []
    for stream in streams if streams is not None else (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue  # replaced by something without a descriptor
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poller.poll(0)):
            continue
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
        silenced.append(fd)
    return silenced
