"""Whether a flow-run process is still supervised, and its output once it is not.

A worker or serving process starts each run's process, reads its output through a pipe,
stops it and reports it. Killed alone (an out-of-memory kill, `kill -9` of its pid), it
leaves that process orphaned: nobody stops or reports it any more, and its output pipe
has no reader, so a write into it fails. Rich, which prints Prefect's console logs, ends
the process on the first such failure (`SystemExit`, from inside whatever it was doing).

So every deployment's run watches over its process (`watch_supervision`, an
`on_running` hook). A console log into a pipe nobody reads points that output at the null device
instead of ending the process, and a check every second notices an orphaned process
even when it logs nothing: either way the process is then marked orphaned for good
and its run's log says so. A run in the middle of a step goes on to its end, reporting
its own states as it always does (an authorization whose instance was just created
still saves its token); a run waiting hot ends its wait instead (`flows.steps.hot_wait`),
since nobody would supervise the rest of it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from prefect.logging.handlers import PrefectConsoleHandler
from prefect.logging.loggers import flow_run_logger

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun, State

# How often a run checks that what started its process is still there: system calls only.
SUPERVISION_CHECK_SECONDS = 1.0

# Set once this process is known orphaned (by the watch); never cleared.
_orphaned = threading.Event()
# This process's parent when its run started (pid -> parent pid): a later check compares
# against it even when it starts after the parent died.
_parent_at_start: dict[int, int] = {}
_watching = threading.Lock()
# The run whose log hears of it: the latest to start in this process, as (flow, flow run).
_watched: list[tuple[Any, Any]] = []


class Supervision:
    """What started this process; `lost()` tells when it is gone.

    A process Prefect's runner started through `multiprocessing` (`prefect.serve`, with or
    without the fork server) follows the runner itself (multiprocessing's parent
    sentinel). Any other process (a process worker's `python -m prefect.engine`) follows
    its parent pid, as it was when its run started (`watch_supervision`), else as it is
    now: it changes when the parent dies (to init's, or a subreaper's). A container's
    first process (parent pid 0) has nothing to follow but its output. A process the
    watch found orphaned stays so, though its output now goes to the null device.
    """

    def __init__(self) -> None:
        self._runner = multiprocessing.parent_process()
        self._parent_pid = _parent_at_start.get(os.getpid(), os.getppid())

    def lost(self) -> bool:
        """Whether the process that started this one is gone, or nobody reads its output."""
        if _orphaned.is_set():
            return True
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


def watch_supervision(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """A flow `on_running` hook: watch over this process until it ends (once per process;
    a run taken back after a hot wait, or a later run, is already watched).

    Only a deployment's run, which a serving process or worker started: a flow called
    directly (a script, a test) runs in a process nobody supervises anyway.
    """
    if flow_run.deployment_id is None:
        return
    _watched.append((flow, flow_run))
    if not _watching.acquire(blocking=False):
        return
    _parent_at_start.setdefault(os.getpid(), os.getppid())
    for handler in _console_handlers():
        # Rich documents this method as the one to replace (its own ends the process).
        handler.console.on_broken_pipe = _orphaned_by_a_console_log  # type: ignore[method-assign]
    threading.Thread(
        target=watch_output,
        args=(Supervision(), _say_orphaned),
        name="open-connectors-supervision",
        daemon=True,
    ).start()


def watch_output(
    supervision: Supervision,
    orphaned: Callable[[list[int]], None],
    *,
    every: float | None = None,
    streams: tuple[TextIO, ...] | None = None,
) -> None:
    """Check `supervision` every `every` seconds; once lost, point the output nobody reads
    at the null device, tell `orphaned` which descriptors, and return."""
    while True:
        time.sleep(SUPERVISION_CHECK_SECONDS if every is None else every)
        if supervision.lost():
            orphaned(silence_unread_output(streams))
            return


def _orphaned_by_a_console_log() -> None:
    """Rich's broken-pipe handler in a run's process: the output goes to the null device,
    and the process goes on (Rich's own raises `SystemExit`). The watch says so in the
    run's log at its next check (not from inside Rich's write)."""
    silence_unread_output()
    _orphaned.set()


def _say_orphaned(silenced: list[int]) -> None:
    """Mark this process orphaned and say so in its run's log (the watch calls it once)."""
    _orphaned.set()
    flow, flow_run = _watched[-1]
    flow_run_logger(flow_run, flow).warning(
        "The serving process or worker that started this run's process is gone: a cancel "
        "no longer reaches this process, and console output nobody reads goes to the null "
        "device."
    )


def _console_handlers() -> list[PrefectConsoleHandler]:
    """Prefect's console log handlers configured in this process."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return [
        handler
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, PrefectConsoleHandler)
    ]
