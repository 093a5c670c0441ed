"""Imported by the fork server alone, first of its preloads: outlive a SIGTERM meant for others.

A signal sent to the serving process's whole process group (`kill -TERM -<pgid>`, a
service manager stopping the service, a test harness) reaches the fork server too.
Killed, it would take with it the exit status of every flow run it forked: Prefect
would read each running run's process as ended (code 255) and report the run Crashed
while it goes on. So the fork server ignores SIGTERM and SIGHUP (it exits by itself
once the serving process and the runs it forked have exited), and each forked run
gets the default handlers back, so that Prefect cancels it as it cancels any run.

Imported anywhere else (a test, a tool), it does nothing.
"""

from __future__ import annotations

import multiprocessing.forkserver
import os
import signal
import sys

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def imported_by_fork_server() -> bool:
    """Whether this import happens inside multiprocessing's fork server (its preloads)."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is multiprocessing.forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


def _defaults_in_child() -> None:
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


if imported_by_fork_server():
    for _signum in SIGNALS:
        signal.signal(_signum, signal.SIG_IGN)
    os.register_at_fork(after_in_child=_defaults_in_child)
